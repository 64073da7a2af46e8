"""The fidelities that run inside the sandbox, next to the candidate: `check`, `short` and `full`.

`check` holds a model to the contract on a tiny batch: it has trainable parameters and stays
under the parameter budget, then the task checks its own contract (`Task.check_contract`; for
sequence tasks: token ids [B, T] -> finite logits [B, T, V], causal, no mixing across the
batch; see `evaluators.contracts`); FLOPs are counted with `torch.utils.flop_counter`.
`short` (and `full`) train for a fixed number of AdamW steps with warm-up and cosine decay
from a fixed seed, stop early on divergence, and return raw predictions on the held-out
inputs: the host computes the quality metric from those. The learning curve they record
(`curve_steps` says at which steps) feeds `evaluators.curves`, which extrapolates a short
run to the full budget. `proxy` and `bench` live in `evaluators.proxies` and
`evaluators.bench`; `evaluators.model_job` runs a job's fidelity with them.

Contract violations raise `ContractViolation` (status `invalid`); divergence raises
`Diverged` (status `error`). Both messages say what to change.
"""
from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from evaluators.contracts import ContractViolation
from wire.task import Budget, TaskSpec

if TYPE_CHECKING:
    from evaluators.tasks.base import Task

CURVE_POINTS = 20  # learning-curve samples recorded per training run


class JobFailure(Exception):
    """A job the candidate broke: the status it gets, a message a coder can act on, the candidate's traceback."""

    def __init__(self, status: str, message: str, trace: str = ""):
        super().__init__(message)
        self.status, self.message, self.trace = status, message, trace


class Diverged(Exception):
    """Training produced a non-finite loss."""


def load_candidate(path: Path, entry: str = "build_model", hint: str | None = None) -> ModuleType:
    """Import the candidate module at `path`; ContractViolation (saying `hint`) when it lacks the callable `entry`."""
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, entry, None)):
        raise ContractViolation(hint or f"the module defines no top-level {entry}(...) function; add it "
                                        "(the task's contract says what it takes and returns)")
    return module


def build(module: ModuleType, spec: TaskSpec, seed: int, entry: str = "build_model") -> torch.nn.Module:
    torch.manual_seed(seed)
    model = getattr(module, entry)(spec)
    if not isinstance(model, torch.nn.Module):
        raise ContractViolation(f"{entry}(spec) returned {type(model).__name__}, not a torch.nn.Module")
    return model


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check(task: Task, spec: TaskSpec, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
    """Size, then the task's own contract (`Task.check_contract`), on a tiny batch."""
    params = count_params(model)
    if params == 0:
        raise ContractViolation("the model has no trainable parameters; it cannot learn anything")
    if params > spec.max_params:
        raise ContractViolation(f"the model has {params:,} parameters, over the budget of {spec.max_params:,}; "
                                "reduce width or depth")
    model.to(device).eval()
    return {"params": float(params), **task.check_contract(spec, model, device)}


def curve_steps(total_steps: int, points: int) -> list[float]:
    """The step each of `train`'s `points` curve samples stands for (the middle of its averaging window)."""
    every = max(1, total_steps // CURVE_POINTS)
    ends = [min(total_steps, (i + 1) * every) for i in range(points)]
    starts = [0] + ends[:-1]
    return [(a + b) / 2 for a, b in zip(starts, ends)]


def lr_at(step: int, budget: Budget) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    warmup = max(1, int(budget.warmup_frac * budget.steps))
    if step < warmup:
        return budget.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, budget.steps - warmup)
    return budget.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(task: Task, spec: TaskSpec, model: torch.nn.Module, budget: Budget, seed: int,
          device: torch.device) -> dict[str, float | list[float]]:
    """AdamW for `budget.steps` steps; returns final loss, curve and wall time.

    On a CPU this is plain float32 training, step for step what it always was. On a GPU (the
    path a researcher's ladder runs): bf16 autocast for the forward pass and loss, the fused
    AdamW kernel, TF32 matmuls, optional `torch.compile` (`budget.compile` or ARCHLAB_COMPILE=1
    in the process's environment, which a sandboxed job does not inherit), losses read back at
    the curve's points rather than every step (a read is a device sync), and the peak memory.
    `budget.accumulate` > 1 splits each step's batch into that many micro-batches (the same
    samples, drawn at once from the same generator) whose losses are weighted by their share of
    the rows, so the step's gradient is the whole batch's: exact when the task's loss is a mean
    over rows with the same number of scored targets each (lm, mqar and charlm all are).
    """
    model.to(device).train()
    cuda = device.type == "cuda"
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": budget.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=budget.lr, betas=(0.9, 0.98),
                                  **({"fused": True} if cuda else {}))
    forward = model
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)
        if budget.compile or os.environ.get("ARCHLAB_COMPILE") == "1":
            forward = torch.compile(model)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    generator = torch.Generator().manual_seed(spec.seed * 1_000_003 + seed)
    every = max(1, budget.steps // CURVE_POINTS)
    curve: list[float] = []
    window: list = []
    start = time.perf_counter()
    for step in range(budget.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, budget)
        x, y = task.train_batch(spec, generator, budget.batch_size)
        optimizer.zero_grad(set_to_none=True)
        if budget.accumulate == 1:
            with autocast:
                loss = task.loss(forward(x.to(device)), y.to(device))
            if not cuda and not torch.isfinite(loss):
                raise _diverged(loss.item(), step)
            loss.backward()
        else:
            loss = _accumulated(task, forward, x, y, budget.accumulate, device, autocast)
            if not cuda and not torch.isfinite(loss):
                raise _diverged(loss.item(), step)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        window.append(loss.detach() if cuda else loss.item())
        if (step + 1) % every == 0 or step + 1 == budget.steps:
            if cuda:                                     # one device sync per curve point, not per step
                losses = torch.stack(window).float().cpu().tolist()
                bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
                if bad is not None:
                    raise _diverged(losses[bad], step + 1 - len(losses) + bad)
                window = losses
            curve.append(sum(window) / len(window))
            window = []
    model.eval()
    out: dict[str, float | list[float]] = {"train_loss": curve[-1] if curve else float("nan"),
                                           "steps": float(budget.steps)}
    if cuda:
        torch.cuda.synchronize(device)
        out["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    out.update(train_seconds=time.perf_counter() - start, curve=curve)
    return out


def _diverged(value: float, step: int) -> Diverged:
    return Diverged(f"training diverged: loss became {value} at step {step}; lower the learning rate, add "
                    "normalisation, or bound the feature map")


def _accumulated(task: Task, forward, x: torch.Tensor, y: torch.Tensor, parts: int, device: torch.device,
                 autocast) -> torch.Tensor:
    """Backward through `parts` micro-batches of (x, y), each loss weighted by its share of the rows; returns the
    whole batch's loss (detached)."""
    total = x.shape[0]
    loss = torch.zeros((), device=device)
    for xs, ys in zip(torch.tensor_split(x, parts), torch.tensor_split(y, parts)):
        if xs.shape[0] == 0:
            continue
        with autocast:
            part = task.loss(forward(xs.to(device)), ys.to(device)) * (xs.shape[0] / total)
        part.backward()
        loss = loss + part.detach().float()
    return loss


def heldout_predictions(task: Task, model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    model.eval()
    return task.predict(model, inputs)
