"""The contract checks a task family holds a candidate model to, on a tiny batch, inside the sandbox.

Each check raises `ContractViolation` with a message that says what to change, or returns a
few cost metrics. A task picks its check through `Task.check_contract` (by family by default):

- `sequence` (mqar, charlm): token ids [B, T] -> floating logits [B, T, V], finite; causal
  (changing token t changes no output before t); samples do not mix across the batch.
- `vision` (digits): images [B, C, H, W] -> floating logits [B, classes], finite; samples do
  not mix across the batch (a model that normalises over the batch in eval mode is refused).

What is not checked here: parameter count and budget (`fidelities.check`, task-independent),
training behaviour (the `short` fidelity), and speed (the `bench` fidelity).
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


class ContractViolation(Exception):
    """The candidate does not honour the task contract."""


def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two outputs differ beyond float noise, relative to their scale."""
    scale = max(1.0, a.abs().max().item())
    return (a - b).abs().max().item() > 1e-4 * scale


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Forward FLOPs of `model(x)`, counted by `torch.utils.flop_counter` (a multiply-add is 2)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def _forward_checked(model, x: torch.Tensor, expected: tuple[int, ...], axes: str) -> torch.Tensor:
    with torch.no_grad():
        y = model(x)
    if not isinstance(y, torch.Tensor):
        raise ContractViolation(f"forward returned {type(y).__name__}; return a tensor of logits {axes}")
    if tuple(y.shape) != expected:
        raise ContractViolation(f"forward returned shape {tuple(y.shape)} for input {tuple(x.shape)}; "
                                f"expected logits of shape {expected} = {axes}")
    if not torch.is_floating_point(y):
        raise ContractViolation(f"forward returned dtype {y.dtype}; logits must be floating point")
    if not torch.isfinite(y).all():
        raise ContractViolation("forward produced NaN or inf logits at initialisation; check normalisation "
                                "and divisions (add an epsilon)")
    return y


def check_sequence(task, spec, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
    """Shape, dtype, finiteness, causality and batch independence of a token model; FLOPs per token."""
    x = task.example_input(spec, 2, seed=spec.seed + 1).to(device)
    B, T, V = x.shape[0], spec.seq_len, spec.vocab_size
    y = _forward_checked(model, x, (B, T, V), "[batch, seq_len, vocab_size]")
    _check_causal(model, x, y, V)
    x2 = x.clone()
    x2[1] = (x2[1] + 7) % V
    _check_batch_independent(model, x, x2, y)
    return {"flops_per_token": count_flops(model, x[:1]) / T}


def check_vision(task, spec, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
    """Shape, dtype, finiteness and batch independence of an image classifier; FLOPs per image."""
    x = task.example_input(spec, 4, seed=spec.seed + 1).to(device)
    y = _forward_checked(model, x, (x.shape[0], spec.num_classes), "[batch, num_classes]")
    x2 = x.clone()
    x2[1:] = torch.flip(x2[1:], dims=[-1]) * 2.0 + 0.5
    _check_batch_independent(model, x, x2, y)
    return {"flops_per_image": count_flops(model, x[:1])}


CHECKS = {"sequence": check_sequence, "vision": check_vision}


def _check_causal(model, x, y, vocab_size: int) -> None:
    T = x.shape[1]
    with torch.no_grad():
        for t in sorted({1, T // 3, T // 2, T - 1}):
            x2 = x.clone()
            x2[:, t:] = (x2[:, t:] + 1 + torch.arange(T - t, device=x.device)) % vocab_size
            y2 = model(x2)
            if differs(y[:, :t], y2[:, :t]):
                first = next(s for s in range(t) if differs(y[:, s], y2[:, s]))
                raise ContractViolation(
                    f"the model is not causal: changing tokens from position {t} on changed the output at "
                    f"position {first}; mask attention to earlier positions and pad convolutions on the left")


def _check_batch_independent(model, x, x2, y) -> None:
    """`x2` equals `x` in sample 0 only; sample 0's output must not move."""
    with torch.no_grad():
        y2 = model(x2)
    if differs(y[0], y2[0]):
        raise ContractViolation("samples mix across the batch: changing sample 1 changed the output for sample 0; "
                                "do not normalise or pool over the batch dimension")
