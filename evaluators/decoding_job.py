"""Inside the sandbox: one job of the `decode` task — time the references, then the candidate; return its ids.

Called by `sandbox.runner` for tasks of family `decoding`, with the clock the runner bound
before anything of the candidate existed. In order:

1. the model is built from the weights file the host wrote (`inputs/train_weights.npy`) and
   its digest checked against the spec; the prompts are `inputs/prompts.npy`, one block of
   `prompts` rows per pass;
2. timed fidelities only: both references (`greedy_nocache`, `greedy_cached`) are timed on
   the passes' prompts *before the candidate is imported*, so nothing it patches can slow
   them down; their outputs are dropped (only a digest of the cached reference's first pass
   is reported, `environment["reference_sha256"]`, so the host can see the sandbox decodes
   as it does);
3. the candidate is imported (`generate` must exist), then run: a warm-up pass, then timed
   passes, each on fresh prompts; every pass's ids are validated (1-D torch.long, exactly
   `max_new_tokens`, in [0, 256)) and kept;
4. after every pass the model's weights digest and the time functions are compared with
   what they were before the import: a changed model or a replaced timer is a
   `ContractViolation` (status `invalid`);
5. every id goes to `out/decoded.npy` (int64 [rows, new tokens]); the timings go into the
   report's metrics as `<procedure>_<median|ci_low|ci_high|p90|cv|repeats|total>` with
   procedure `nocache`, `cached`, `candidate` (seconds per pass).

What it does not do: judge the ids (the host does, against a reference it never sends), or
stop a candidate that finds and rewrites this module's private references to the clock and
the timing loop (in one process nothing can; the host's check that the timings fit in the
wall time it measured for the whole job is the backstop, and the docker backend's
read-only root keeps the evaluator's files themselves out of reach).
"""
from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from evaluators import bench, decoding, fidelities
from evaluators.contracts import ContractViolation
from wire.task import TaskSpec

TIMERS = ("perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "time_ns", "process_time")
# bound when the runner imports this module, before the candidate: what the candidate could replace is compared
# with these afterwards, and the timing loop is called through this module's own reference
_ORIGINAL_TIMERS = {name: getattr(time, name) for name in TIMERS}
_time_procedure = decoding.time_procedure
_MEASURING = {"evaluators.decoding.time_procedure": (decoding, "time_procedure", decoding.time_procedure),
              "evaluators.decoding.weights_digest": (decoding, "weights_digest", decoding.weights_digest),
              "evaluators.bench.median_ci": (bench, "median_ci", bench.median_ci)}
_weights_digest = decoding.weights_digest


def load_generate(path: Path) -> ModuleType:
    return fidelities.load_candidate(path, "generate", "the module defines no generate(model, prompt_ids, "
                                     "max_new_tokens) function; add one that returns a 1-D torch.long tensor of "
                                     "max_new_tokens ids")


def validated(ids, max_new_tokens: int) -> np.ndarray:
    """The ids of one generate call as int64 [max_new_tokens]; ContractViolation saying what is wrong."""
    if not isinstance(ids, torch.Tensor):
        raise ContractViolation(f"generate returned {type(ids).__name__}; return a 1-D torch.long tensor of "
                                f"{max_new_tokens} token ids")
    if ids.dtype != torch.long:
        raise ContractViolation(f"generate returned dtype {ids.dtype}; return torch.long ids (e.g. `.long()`)")
    if tuple(ids.shape) != (max_new_tokens,):
        raise ContractViolation(f"generate returned shape {tuple(ids.shape)}; expected ({max_new_tokens},): exactly "
                                "max_new_tokens new ids, without the prompt and without a batch dimension")
    out = ids.detach().cpu().numpy().astype(np.int64)
    if out.size and (out.min() < 0 or out.max() > 255):
        raise ContractViolation(f"generate returned ids outside [0, 256) (min {out.min()}, max {out.max()})")
    return out


def tampering(model: torch.nn.Module, digest: str) -> None:
    """ContractViolation if the model's weights or the time functions are not what they were."""
    replaced = [f"time.{name}" for name, fn in _ORIGINAL_TIMERS.items() if getattr(time, name, None) is not fn]
    replaced += [name for name, (module, attr, fn) in _MEASURING.items() if getattr(module, attr, None) is not fn]
    if replaced:
        raise ContractViolation(f"the candidate replaced {', '.join(replaced)}; timing is the evaluator's job: "
                                "leave the time module and the evaluator's functions alone")
    if _weights_digest(model) != digest:
        raise ContractViolation("generate changed the model's weights or buffers; the model is shared and must not "
                                "be modified: work on a copy (e.g. quantize_dynamic(model, inplace=False)) or on "
                                "separate tensors")


def run(spec: TaskSpec, weights: np.ndarray | None, fidelity: str, inputs: Path, out: Path,
        device: torch.device, clock) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, environment) of one decode job; writes `out/decoded.npy`."""
    if weights is None:
        raise RuntimeError("the job's inputs hold no train_weights.npy; the host writes it (Decode.sandbox_files)")
    model = decoding.load_flat(decoding.model_from_recipe(
        {k: spec.data[f"model_{k}"] for k in ("d_model", "n_layers", "n_heads", "max_len", "exit_layer")}), weights)
    model = model.to(device).eval().requires_grad_(False)
    digest = _weights_digest(model)
    if decoding.array_digest(weights.astype(np.float32)) != spec.data["weights_sha256"]:
        raise RuntimeError("the weights file does not hash to the spec's weights_sha256; the host wrote another model")
    prompts = torch.from_numpy(np.load(inputs / "prompts.npy", allow_pickle=False)).long().to(device)
    timed = fidelity not in ("check", "proxy")
    n_new = int(spec.data["check_new_tokens" if not timed else "max_new_tokens"])
    per_pass = spec.budgets["check" if not timed else fidelity if fidelity in spec.budgets else "short"].steps
    passes = len(prompts) // per_pass
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    options = {"max_repeats": passes - 1, "max_seconds": float(spec.data["time_seconds"])}
    metrics: dict[str, float] = {}
    environment: dict[str, str] = {}

    def decoder(fn, keep: list | None = None):
        def one_pass(index: int):
            rows = prompts[index * per_pass:(index + 1) * per_pass]
            with torch.no_grad():
                outputs = [fn(model, p, n_new) for p in rows]
            sync()
            if keep is not None:
                keep.append(outputs)
        return one_pass

    if timed:
        with torch.no_grad():
            first = torch.stack([decoding.greedy_cached(model, p, n_new) for p in prompts[:per_pass]]).cpu().numpy()
        environment["reference_sha256"] = decoding.array_digest(first.astype(np.int64))
        del first                       # no reference output stays reachable once the candidate is imported
        for name, fn, least in (("nocache", decoding.greedy_nocache, 3), ("cached", decoding.greedy_cached, 5)):
            timing = _time_procedure(_indexed(decoder(fn)), clock, min_repeats=least, **options)
            metrics.update({f"{name}_{k}": v for k, v in timing.items()})
    module = load_generate(inputs / "candidate.py")
    kept: list = []
    run_pass = decoder(module.generate, kept)
    if timed:
        timing = _time_procedure(_indexed(run_pass), clock, after=lambda: tampering(model, digest), **options)
        metrics.update({f"candidate_{k}": v for k, v in timing.items()})
    else:
        run_pass(0)
        tampering(model, digest)
    decoded = np.stack([validated(ids, n_new) for outputs in kept for ids in outputs])
    np.save(out / "decoded.npy", decoded, allow_pickle=False)
    metrics["decoded_rows"] = float(len(decoded))
    return metrics, environment


def _indexed(one_pass):
    """A zero-argument callable for `time_procedure` that decodes the next pass's prompts each call."""
    state = {"index": 0}

    def call():
        one_pass(state["index"])
        state["index"] += 1
    return call
