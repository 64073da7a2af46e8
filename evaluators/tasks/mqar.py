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
from pydantic import Field, model_validator

from evaluators.heldout import seed as heldout_seed
from evaluators.tasks.base import Task, TaskOptions
from wire.task import Budget, TaskSpec
from evaluators.tasks.lazy import torch

IGNORE = -100


def shape_problem(vocab_size: int, seq_len: int, num_pairs: int, num_queries: int) -> str:
    """Why sequences of this shape cannot be made, or ""."""
    if num_pairs > vocab_size // 2 - 1:
        return f"num_pairs={num_pairs} needs at least {num_pairs + 1} key tokens; raise vocab_size"
    if num_queries > num_pairs:
        return "num_queries must not exceed num_pairs"
    slots = (seq_len - 2 * num_pairs) // 2
    if slots < 0:
        return f"seq_len={seq_len} is shorter than the {2 * num_pairs} tokens of {num_pairs} key-value pairs"
    if slots < num_queries:
        return f"seq_len={seq_len} leaves room for {slots} queries, not {num_queries}"
    return ""


def make_mqar(n: int, vocab_size: int, seq_len: int, num_pairs: int, num_queries: int,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [n, T], targets [n, T]); deterministic for the generator's state."""
    problem = shape_problem(vocab_size, seq_len, num_pairs, num_queries)
    if problem:
        raise ValueError(problem)
    half = vocab_size // 2
    context = 2 * num_pairs
    slots = (seq_len - context) // 2

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


class MQAROptions(TaskOptions):
    vocab_size: int = Field(64, ge=4, description="tokens: keys from [1, V/2), values from [V/2, V)")
    seq_len: int = Field(64, ge=4, description="sequence length")
    num_pairs: int = Field(8, ge=1, description="key-value pairs per sequence")
    num_queries: int = Field(8, ge=1, description="keys queried per sequence (at most num_pairs)")
    short_steps: int = Field(400, ge=1, description="training steps at the short fidelity")
    full_steps: int = Field(2000, ge=1, description="training steps at the full fidelity")
    short_seq_len: int | None = Field(None, ge=4, description="a shorter sequence for the short fidelity")
    short_num_pairs: int | None = Field(None, ge=1, description="fewer pairs (and queries) for the short fidelity")

    @model_validator(mode="after")
    def _sequences_fit(self) -> "MQAROptions":
        problem = shape_problem(self.vocab_size, self.seq_len, self.num_pairs, self.num_queries)
        pairs = self.short_num_pairs or self.num_pairs
        short = shape_problem(self.vocab_size, self.short_seq_len or self.seq_len, pairs,
                              pairs if self.short_num_pairs else self.num_queries)
        if problem or short:
            raise ValueError(problem or f"at the short fidelity: {short}")
        return self


class MQAR(Task):
    name = "mqar"
    summary = "multi-query associative recall (Zoology): recall the value of each queried key"
    metric = "accuracy"
    Options = MQAROptions
    search_space = "sequence-blocks"
    token_input = True

    def spec(self, options: MQAROptions) -> TaskSpec:
        data = {"num_pairs": options.num_pairs, "num_queries": options.num_queries}
        # the short fidelity may train on a smaller instance (fewer pairs, shorter sequences), where recall
        # is learned within a few dozen steps: see the proxy-validation study in README
        short_instance = {}
        if options.short_seq_len is not None:
            short_instance["seq_len"] = options.short_seq_len
        if options.short_num_pairs is not None:
            short_instance["num_pairs"] = short_instance["num_queries"] = options.short_num_pairs
        budgets = {
            "check": Budget(steps=1, batch_size=4, lr=1e-3),
            "short": Budget(steps=options.short_steps, batch_size=64, lr=3e-3, instance=short_instance),
            "full": Budget(steps=options.full_steps, batch_size=64, lr=3e-3),
        }
        return TaskSpec(name=self.name, family="sequence", vocab_size=options.vocab_size, seq_len=options.seq_len,
                        data=data, seed=0, heldout_size=256, budgets=budgets)

    def _generate(self, spec: TaskSpec, n: int, generator: torch.Generator):
        return make_mqar(n, spec.vocab_size, spec.seq_len, int(spec.data["num_pairs"]),
                         int(spec.data["num_queries"]), generator)

    def example_input(self, spec: TaskSpec, batch_size: int, seed: int) -> torch.Tensor:
        return self._generate(spec, batch_size, torch.Generator().manual_seed(seed))[0]

    def train_batch(self, spec: TaskSpec, generator: torch.Generator, batch_size: int):
        return self._generate(spec, batch_size, generator)

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
