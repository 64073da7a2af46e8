"""Multi-query associative recall (MQAR), as in the Zoology paper (Arora et al., 2023).

A sequence opens with `num_pairs` key-value pairs, then a query region where some keys come
back, each followed by its value, with padding (token 0) between. At a query key the model
must output that key's value; accuracy is measured on those positions only.

    tokens:  k1 v1 k2 v2 ... kN vN | 0 0 k2 v2 0 k1 v1 0 ...
    target:   .  .  .  .      .  . | . . v2  . . v1  . . ...

Keys come from [1, V/2), values from [V/2, V). The value after a query key is in the input
during training (as in language modelling), which is why `check` insists on causality. In
the held-out inputs the host blanks those values to 0: a causal model's prediction at the
key cannot depend on them, and the answers never enter the sandbox.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from evaluators.heldout import seed as heldout_seed
from wire.task import Budget, TaskSpec
from evaluators.tasks.base import Task

IGNORE = -100


def make_mqar(n: int, vocab_size: int, seq_len: int, num_pairs: int, num_queries: int,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [n, T], targets [n, T]); deterministic for the generator's state."""
    half = vocab_size // 2
    if num_pairs > half - 1:
        raise ValueError(f"num_pairs={num_pairs} needs at least {num_pairs + 1} key tokens; raise vocab_size")
    if num_queries > num_pairs:
        raise ValueError("num_queries must not exceed num_pairs")
    context = 2 * num_pairs
    slots = (seq_len - context) // 2
    if slots < num_queries:
        raise ValueError(f"seq_len={seq_len} leaves room for {slots} queries, not {num_queries}")

    keys = torch.argsort(torch.rand(n, half - 1, generator=generator), dim=1)[:, :num_pairs] + 1
    values = torch.randint(half, vocab_size, (n, num_pairs), generator=generator)
    tokens = torch.zeros(n, seq_len, dtype=torch.long)
    targets = torch.full((n, seq_len), IGNORE, dtype=torch.long)
    tokens[:, 0:context:2] = keys
    tokens[:, 1:context:2] = values

    which = torch.argsort(torch.rand(n, num_pairs, generator=generator), dim=1)[:, :num_queries]
    slot = torch.argsort(torch.rand(n, slots, generator=generator), dim=1)[:, :num_queries]
    pos = context + 2 * slot                                   # [n, Q] query key positions
    rows = torch.arange(n).unsqueeze(1)
    q_keys = keys.gather(1, which)
    q_values = values.gather(1, which)
    tokens[rows, pos] = q_keys
    tokens[rows, pos + 1] = q_values
    targets[rows, pos] = q_values
    return tokens, targets


class MQAR(Task):
    name = "mqar"
    metric = "accuracy"

    def default_spec(self, **overrides) -> TaskSpec:
        data = {"num_pairs": 8, "num_queries": 8}
        vocab_size = int(overrides.pop("vocab_size", 64))
        seq_len = int(overrides.pop("seq_len", 64))
        for key in list(overrides):
            if key in data:
                data[key] = int(overrides.pop(key))
        # the short fidelity may train on a smaller instance (fewer pairs, shorter sequences), where recall
        # is learned within a few dozen steps: see the proxy-validation study in README
        short_instance = {key.removeprefix("short_"): int(overrides.pop(key))
                          for key in ("short_seq_len", "short_num_pairs") if key in overrides}
        if "num_pairs" in short_instance:
            short_instance["num_queries"] = short_instance["num_pairs"]
        budgets = {
            "check": Budget(steps=1, batch_size=4, lr=1e-3),
            "short": Budget(steps=int(overrides.pop("short_steps", 400)), batch_size=64, lr=3e-3,
                            instance=short_instance),
            "full": Budget(steps=int(overrides.pop("full_steps", 2000)), batch_size=64, lr=3e-3),
        }
        if overrides:
            raise ValueError(f"unknown mqar settings: {', '.join(sorted(overrides))}")
        spec = TaskSpec(name=self.name, family="sequence", vocab_size=vocab_size, seq_len=seq_len,
                        data=data, seed=0, heldout_size=256, budgets=budgets)
        make_mqar(1, vocab_size, seq_len, data["num_pairs"], data["num_queries"], torch.Generator())
        small = spec.at("short")
        make_mqar(1, small.vocab_size, small.seq_len, small.data["num_pairs"], small.data["num_queries"],
                  torch.Generator())
        return spec

    def _generate(self, spec: TaskSpec, n: int, generator: torch.Generator):
        return make_mqar(n, spec.vocab_size, spec.seq_len, int(spec.data["num_pairs"]),
                         int(spec.data["num_queries"]), generator)

    def example_input(self, spec: TaskSpec, batch_size: int, seed: int) -> torch.Tensor:
        return self._generate(spec, batch_size, torch.Generator().manual_seed(seed))[0]

    def train_batch(self, spec: TaskSpec, generator: torch.Generator, batch_size: int):
        return self._generate(spec, batch_size, generator)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                               ignore_index=IGNORE)

    def heldout(self, spec: TaskSpec, secret: bytes) -> tuple[dict[str, np.ndarray], np.ndarray]:
        generator = torch.Generator().manual_seed(heldout_seed(secret, self.name, spec.seed, spec.seq_len,
                                                               spec.vocab_size, sorted(spec.data.items())))
        tokens, targets = self._generate(spec, spec.heldout_size, generator)
        query = targets != IGNORE
        blanked = tokens.clone()
        blanked[:, 1:][query[:, :-1]] = 0                      # the answers never leave the host
        positions = query.nonzero()[:, 1].reshape(spec.heldout_size, -1)
        answers = targets[query].reshape(spec.heldout_size, -1)
        return {"tokens": blanked.numpy(), "positions": positions.numpy()}, answers.numpy()

    def predict(self, model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
        tokens = torch.from_numpy(inputs["tokens"]).long()
        positions = torch.from_numpy(inputs["positions"]).long()
        device = next(model.parameters()).device
        outputs = []
        with torch.no_grad():
            for start in range(0, tokens.shape[0], 64):
                logits = model(tokens[start:start + 64].to(device)).float().cpu()   # [b, T, V]
                idx = positions[start:start + 64]
                outputs.append(logits.gather(1, idx.unsqueeze(-1).expand(-1, -1, logits.shape[-1])))
        return torch.cat(outputs).numpy().astype(np.float32)      # [N, Q, V]

    def expected_prediction_shape(self, spec: TaskSpec) -> tuple[int, ...]:
        return (spec.heldout_size, int(spec.data["num_queries"]), spec.vocab_size)

    def score(self, spec: TaskSpec, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        logits = torch.from_numpy(predictions).double()
        answers = torch.from_numpy(targets).long()
        logprobs = torch.log_softmax(logits, dim=-1)
        loss = -logprobs.gather(-1, answers.unsqueeze(-1)).mean().item()
        accuracy = (logits.argmax(-1) == answers).double().mean().item()
        return {"accuracy": accuracy, "heldout_loss": loss}
