"""The fidelities that run inside the sandbox, next to the candidate: `check` and `short`.

`check` holds a model to the contract on a tiny batch: `build_model(spec)` returns an
`nn.Module` mapping token ids [B, T] to logits [B, T, V]; outputs are finite; the model is
causal (changing token t changes no output before t); samples do not mix across the batch;
it has trainable parameters and stays under the parameter budget; its FLOPs are counted with
`torch.utils.flop_counter`. `short` (and `full`) train for a fixed number of AdamW steps with
warm-up and cosine decay from a fixed seed, stop early on divergence, and return raw
predictions on the held-out inputs: the host computes the quality metric from those.

Contract violations raise `ContractViolation` (status `invalid`); divergence raises
`Diverged` (status `error`). Both messages say what to change.
"""
from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from evaluators.spec import Budget, TaskSpec
from evaluators.tasks.base import Task

CURVE_POINTS = 20  # learning-curve samples recorded per training run


class ContractViolation(Exception):
    """The candidate does not honour the task contract."""


class Diverged(Exception):
    """Training produced a non-finite loss."""


def load_candidate(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "build_model", None)):
        raise ContractViolation("the module defines no build_model(spec) function; add one that returns an nn.Module")
    return module


def build(module: ModuleType, spec: TaskSpec, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = module.build_model(spec)
    if not isinstance(model, torch.nn.Module):
        raise ContractViolation(f"build_model(spec) returned {type(model).__name__}, not a torch.nn.Module")
    return model


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check(task: Task, spec: TaskSpec, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
    """Contract, causality, batch independence, size and FLOPs on a tiny batch."""
    params = count_params(model)
    if params == 0:
        raise ContractViolation("the model has no trainable parameters; it cannot learn anything")
    if params > spec.max_params:
        raise ContractViolation(f"the model has {params:,} parameters, over the budget of {spec.max_params:,}; "
                                "reduce width or depth")
    model.to(device).eval()
    x = task.example_input(spec, 2, seed=spec.seed + 1).to(device)
    B, T, V = x.shape[0], spec.seq_len, spec.vocab_size
    with torch.no_grad():
        y = model(x)
    if not isinstance(y, torch.Tensor):
        raise ContractViolation(f"forward returned {type(y).__name__}; return a tensor of logits [B, T, V]")
    if tuple(y.shape) != (B, T, V):
        raise ContractViolation(f"forward returned shape {tuple(y.shape)} for input {tuple(x.shape)}; "
                                f"expected logits of shape {(B, T, V)} = [batch, seq_len, vocab_size]")
    if not torch.is_floating_point(y):
        raise ContractViolation(f"forward returned dtype {y.dtype}; logits must be floating point")
    if not torch.isfinite(y).all():
        raise ContractViolation("forward produced NaN or inf logits at initialisation; check normalisation "
                                "and divisions (add an epsilon)")
    _check_causal(model, x, y, V)
    _check_batch_independent(model, x, y, V)
    flops = _count_flops(model, x[:1])
    return {"params": float(params), "flops_per_token": flops / T}


def _differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    scale = max(1.0, a.abs().max().item())
    return (a - b).abs().max().item() > 1e-4 * scale


def _check_causal(model, x, y, vocab_size: int) -> None:
    T = x.shape[1]
    with torch.no_grad():
        for t in sorted({1, T // 3, T // 2, T - 1}):
            x2 = x.clone()
            x2[:, t:] = (x2[:, t:] + 1 + torch.arange(T - t, device=x.device)) % vocab_size
            y2 = model(x2)
            if _differs(y[:, :t], y2[:, :t]):
                first = next(s for s in range(t) if _differs(y[:, s], y2[:, s]))
                raise ContractViolation(
                    f"the model is not causal: changing tokens from position {t} on changed the output at "
                    f"position {first}; mask attention to earlier positions and pad convolutions on the left")


def _check_batch_independent(model, x, y, vocab_size: int) -> None:
    x2 = x.clone()
    x2[1] = (x2[1] + 7) % vocab_size
    with torch.no_grad():
        y2 = model(x2)
    if _differs(y[0], y2[0]):
        raise ContractViolation("samples mix across the batch: changing sample 1 changed the output for sample 0; "
                                "do not normalise or pool over the batch dimension")


def _count_flops(model, x) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def lr_at(step: int, budget: Budget) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    warmup = max(1, int(budget.warmup_frac * budget.steps))
    if step < warmup:
        return budget.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, budget.steps - warmup)
    return budget.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(task: Task, spec: TaskSpec, model: torch.nn.Module, budget: Budget, seed: int,
          device: torch.device) -> dict[str, float | list[float]]:
    """AdamW for `budget.steps` steps; returns final loss, curve and wall time."""
    model.to(device).train()
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": budget.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=budget.lr, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(spec.seed * 1_000_003 + seed)
    every = max(1, budget.steps // CURVE_POINTS)
    curve: list[float] = []
    window: list[float] = []
    start = time.perf_counter()
    for step in range(budget.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, budget)
        x, y = task.train_batch(spec, generator, budget.batch_size)
        logits = model(x.to(device))
        loss = task.loss(logits, y.to(device))
        if not torch.isfinite(loss):
            raise Diverged(f"training diverged: loss became {loss.item()} at step {step}; lower the learning "
                           "rate, add normalisation, or bound the feature map")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        window.append(loss.item())
        if (step + 1) % every == 0 or step + 1 == budget.steps:
            curve.append(sum(window) / len(window))
            window = []
    model.eval()
    return {"train_loss": curve[-1] if curve else float("nan"), "steps": float(budget.steps),
            "train_seconds": time.perf_counter() - start, "curve": curve}


def heldout_predictions(task: Task, model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    model.eval()
    return task.predict(model, inputs)
