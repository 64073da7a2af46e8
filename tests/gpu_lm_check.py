"""A short GPU check of the lm path: the transformer baseline trained at two rungs of the lm ladder in bf16.

Not a pytest module (it needs a GPU and a minute or two): run it on a GPU machine,

    .venv/bin/python tests/gpu_lm_check.py                  # rungs 4 and 6, 200 steps each
    .venv/bin/python tests/gpu_lm_check.py --scales 2 4 --steps 100 --compile

It trains `evaluators/baselines/lm_transformer.py` through `evaluators.fidelities.train` (the
real GPU path: bf16 autocast, fused AdamW, TF32, optional torch.compile, gradient accumulation
with --accumulate) on byte tokens of this project's Python sources (enough text to see the loss
fall; the lm task's own corpus and scoring are not involved), at each rung's width, depth,
heads, sequence length and batch (`evaluators.tasks.lm.rung`), and prints per rung: parameters,
final training loss, tokens/s, peak memory and MFU (model FLOPs: 6 x non-embedding parameters
per token plus attention's 12 x layers x d_model x seq_len, over the GPU's dense bf16 peak:
989 TFLOP/s on an H100 or H200 SXM unless --peak-tflops says otherwise). Exits non-zero when
the loss did not fall. On a machine without CUDA it says so and exits 0 (--device cpu runs it
on the CPU at small scales, as a smoke test).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluators import fidelities  # noqa: E402
from evaluators.tasks.lm import rung  # noqa: E402
from wire.task import Budget, TaskSpec  # noqa: E402

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


class TextTask:
    """Just what `fidelities.train` asks of a task: random windows of a byte stream, next-byte cross-entropy."""

    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens

    def train_batch(self, spec, generator, batch_size):
        starts = torch.randint(0, len(self.tokens) - spec.seq_len - 1, (batch_size,), generator=generator)
        rows = torch.stack([self.tokens[s:s + spec.seq_len + 1] for s in starts.tolist()])
        return rows[:, :-1], rows[:, 1:]

    def loss(self, logits, targets):
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def corpus(limit: int = 8 << 20) -> torch.Tensor:
    text = b"".join(p.read_bytes() for p in sorted(ROOT.rglob("*.py")) if ".venv" not in p.parts)[:limit]
    return torch.frombuffer(bytearray(text), dtype=torch.uint8).long()


def peak(device: torch.device, given: float | None) -> float | None:
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[4, 6])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=0, help="rows per step (default: the rung's)")
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_lm_check: no CUDA device on this machine; nothing measured (run it on a GPU machine)")
        return 0
    device = torch.device(args.device)
    task = TextTask(corpus())
    source = (ROOT / "evaluators/baselines/lm_transformer.py").read_text()
    path = Path(f"/tmp/gpu_lm_check_{id(task)}.py")
    path.write_text(source)
    module = fidelities.load_candidate(path)
    tflops = peak(device, args.peak_tflops)
    failed = False
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else device}, torch {torch.__version__}, "
          f"peak {tflops or '?'} TFLOP/s bf16")
    for scale in args.scales:
        r = rung(scale)
        batch = args.batch or r["batch_size"]
        spec = TaskSpec(name="lm", family="sequence", vocab_size=256, seq_len=r["seq_len"],
                        data={k: r[k] for k in ("d_model", "n_layers", "n_heads")}, max_params=10 ** 10)
        budget = Budget(steps=args.steps, batch_size=batch, lr=r["lr"], accumulate=args.accumulate,
                        compile=args.compile)
        model = fidelities.build(module, spec, 0)
        params = fidelities.count_params(model)
        non_embedding = params - spec.vocab_size * r["d_model"]
        if device.type == "cuda":
            warm = budget.model_copy(update={"steps": 5})           # compile and cuDNN/cuBLAS autotuning, untimed
            fidelities.train(task, spec, fidelities.build(module, spec, 0), warm, 0, device)
        started = time.perf_counter()
        trained = fidelities.train(task, spec, model, budget, 0, device)
        seconds = time.perf_counter() - started
        tokens = args.steps * batch * r["seq_len"]
        flops_per_token = 6 * non_embedding + 12 * r["n_layers"] * r["d_model"] * r["seq_len"]
        mfu = tokens / seconds * flops_per_token / (tflops * 1e12) if tflops else None
        fell = trained["curve"][-1] < trained["curve"][0] - 0.3
        failed |= not fell
        print(f"rung {scale}: d_model {r['d_model']}, {r['n_layers']} layers, {r['n_heads']} heads, seq {r['seq_len']}, "
              f"batch {batch} x{args.accumulate}; {params / 1e6:.2f}M params; loss {trained['curve'][0]:.3f} -> "
              f"{trained['curve'][-1]:.3f}; {tokens / seconds:,.0f} tokens/s; "
              f"peak memory {trained.get('peak_memory_mb', float('nan')):.0f} MB; "
              f"MFU {'n/a' if mfu is None else f'{100 * mfu:.1f}%'}" + ("" if fell else "  LOSS DID NOT FALL"))
    path.unlink(missing_ok=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
