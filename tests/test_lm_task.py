"""The `lm` task: its ladder, `archlab prepare-data`, scoring in bits per byte with causality checked on the scored
batch, the held-out data hidden from jobs, and `archlab run --task lm` end to end with the offline engine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from archlab.prepare_data import PrepareError, prepare
from evaluators.tasks import get_task
from evaluators.tasks.lm import CAUSALITY_RULE, Refused, rung
from tests.eval_support import run_job

pytestmark = pytest.mark.timeout(400)
ROOT = Path(__file__).resolve().parent.parent

# a baseline-like causal model: embedding, causal depthwise convolution, MLP, sized from the rung (spec.data)
TINY_CAUSAL = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class Model(nn.Module):
    def __init__(self, spec):
        super().__init__()
        d = int(spec.data["d_model"])
        self.embed = nn.Embedding(spec.vocab_size, d)
        self.conv = nn.Conv1d(d, d, 4, groups=d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, spec.vocab_size)

    def forward(self, x):
        h = self.embed(x)
        h = h + self.conv(F.pad(h.transpose(1, 2), (3, 0))).transpose(1, 2)
        h = h + self.mlp(self.norm(h))
        return self.out(self.norm(h))


def build_model(spec):
    return Model(spec)
'''

# honest when checked (two short rows), and reads token t + 1 when scored
PEEKING = TINY_CAUSAL.replace('''        return self.out(self.norm(h))''', '''        logits = self.out(self.norm(h))
        if not self.training and x.shape[0] > 8:
            logits = logits.clone()
            logits[:, :-1] += 20.0 * F.one_hot(x[:, 1:], logits.shape[-1]).float()
        return logits''')


def english(path: Path, lines: int = 3000) -> Path:
    rng = np.random.default_rng(0)
    words = "the a cat dog sat ran on under mat tree and then slept far away quickly naïve über".split()
    path.write_text("\n".join(" ".join(rng.choice(words, 10)) + "." for _ in range(lines)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    return english(tmp_path_factory.mktemp("lm-text") / "story.txt")


@pytest.fixture(scope="module")
def spec():
    return get_task("lm").default_spec(heldout_windows=32, short_steps=80)


def test_the_ladder_grows_with_scale_and_fidelities_map_to_rungs():
    rungs = [rung(s) for s in range(8)]
    for key in ("d_model", "n_layers", "n_heads", "seq_len", "batch_size", "tokens"):
        values = [r[key] for r in rungs]
        assert values == sorted(values) and values[0] < values[-1], (key, values)
    assert [r["lr"] for r in rungs] == sorted((r["lr"] for r in rungs), reverse=True)
    assert rungs[0]["d_model"] == 64 and rungs[0]["n_layers"] == 2 and rungs[0]["seq_len"] == 64
    spec = get_task("lm").default_spec(scale=1)
    assert spec.data["d_model"] == rung(1)["d_model"] and spec.seq_len == rung(1)["seq_len"]
    short, full = spec.at("short"), spec.at("full")
    assert (short.data["d_model"], short.data["n_layers"], short.budgets["short"].steps) == \
        (rung(1)["d_model"], rung(1)["n_layers"], rung(1)["steps"])
    assert (full.data["d_model"], full.data["n_layers"], full.seq_len, spec.budgets["full"].steps) == \
        (rung(2)["d_model"], rung(2)["n_layers"], rung(2)["seq_len"], rung(2)["steps"])
    task = get_task("lm")
    assert (task.metric, task.higher_is_better, task.search_space, task.token_input) == \
        ("bits_per_byte", False, "sequence-blocks", True)


def test_prepare_data_byte_and_bpe(text, tmp_path):
    byte = prepare(text, "byte", tmp_path / "byte")
    meta = json.loads((byte / "meta.json").read_text())
    train = np.memmap(byte / "train.bin", dtype=np.uint16, mode="r")
    assert meta["vocab_size"] == 256 and meta["train_tokens"] == len(train) == meta["train_bytes"]
    assert bytes(train[:40].astype(np.uint8)) == text.read_bytes()[:40]
    assert meta["val_bytes"] > 0.05 * len(text.read_bytes())

    bpe = prepare(text, "bpe:400", tmp_path / "bpe")
    meta = json.loads((bpe / "meta.json").read_text())
    val = np.memmap(bpe / "val.bin", dtype=np.uint16, mode="r")
    token_bytes = np.load(bpe / "token_bytes.npy")
    assert meta["vocab_size"] <= 400 and meta["val_tokens"] == len(val) < meta["val_bytes"] / 2   # merges happened
    assert int(token_bytes[val].sum()) == meta["val_bytes"]           # bits per byte counts every byte once
    from tokenizers import Tokenizer
    decoded = Tokenizer.from_file(str(bpe / "tokenizer.json")).decode(val.tolist())
    assert decoded.encode() == text.read_bytes()[-meta["val_bytes"]:]
    again = prepare(text, str(bpe / "tokenizer.json"), tmp_path / "given")   # a tokenizer.json of one's own
    assert np.array_equal(np.fromfile(again / "val.bin", np.uint16), np.asarray(val))
    with pytest.raises(PrepareError, match="bpe:VOCAB"):
        prepare(text, "wordpiece", tmp_path / "bad")


def test_spec_from_a_prepared_dir_and_a_changed_file_is_refused(text, tmp_path):
    directory = prepare(text, "bpe:400", tmp_path / "bpe")
    task = get_task("lm")
    spec = task.default_spec(data=str(directory), scale=0)
    meta = json.loads((directory / "meta.json").read_text())
    assert spec.vocab_size == meta["vocab_size"] and spec.data["tokenizer"] == "bpe:400"
    assert task.host_only_paths(spec) == (str(directory),)
    assert len(task.sandbox_files(spec)["tokens"]) == meta["train_tokens"]
    with open(directory / "val.bin", "r+b") as handle:
        handle.write(b"\x01\x00")
    with pytest.raises(ValueError, match="changed since"):
        task.default_spec(data=str(directory))


def test_scoring_refuses_unnormalised_and_non_causal_log_probs(spec):
    task = get_task("lm")
    instance = spec.at("short")
    inputs, targets = task.heldout(instance, b"k" * 32)
    rows, T = inputs["tokens"].shape
    uniform = np.full(task.expected_prediction_shape(instance), -np.log(256.0))
    assert task.score(instance, uniform, targets)["bits_per_byte"] == pytest.approx(8.0)
    with pytest.raises(Refused, match="normalised"):
        task.score(instance, uniform + 0.1, targets)
    peeked = uniform.copy()                      # put mass on the next input token: the twins disagree before p
    nxt = np.concatenate([inputs["tokens"][:, 1:], inputs["tokens"][:, -1:]], axis=1)
    peeked[np.arange(rows)[:, None], np.arange(T)[None, :], nxt] = np.log(0.9)
    peeked[peeked != np.log(0.9)] = np.log(0.1 / 255)
    with pytest.raises(Refused, match=CAUSALITY_RULE):
        task.score(instance, peeked, targets)
    assert (targets[:, -2] >= 0).sum() >= 2     # twins are there, and look like any other row
    assert len({tuple(r) for r in inputs["tokens"]}) == rows


def test_a_causal_model_is_scored_in_bits_per_byte(spec, tmp_path):
    checked = run_job(tmp_path, TINY_CAUSAL, spec, "check")
    assert checked.status == "ok", checked.message
    result = run_job(tmp_path, TINY_CAUSAL, spec, "short", wall_seconds=120)
    assert result.status == "ok", result.message
    assert 1.0 < result.metrics["bits_per_byte"] < 8.0, result.metrics
    assert result.metrics["heldout_loss"] > 0 and result.metrics["tokens_per_second"] > 0


def test_a_model_that_peeks_when_scored_is_refused(spec, tmp_path):
    assert run_job(tmp_path, PEEKING, spec, "check").status == "ok"     # the check batch cannot see it
    result = run_job(tmp_path, PEEKING, spec, "short", wall_seconds=120)
    assert result.status == "invalid" and CAUSALITY_RULE in result.message, (result.status, result.message)
    assert "bits_per_byte" not in result.metrics


READS_VAL = TINY_CAUSAL + '''
import os
DATA = "DATA_DIR"
try:
    open(os.path.join(DATA, "val.bin"), "rb").read(8)
    print("READ val.bin", flush=True)
except OSError as exc:
    print("REFUSED", type(exc).__name__, flush=True)
    raise RuntimeError("held-out file hidden: " + type(exc).__name__)
'''


def test_the_held_out_file_is_hidden_from_jobs(text, tmp_path):
    directory = prepare(text, "byte", tmp_path / "byte")
    spec = get_task("lm").default_spec(data=str(directory), heldout_windows=16, short_steps=5)
    result = run_job(tmp_path, READS_VAL.replace("DATA_DIR", str(directory)), spec, "short")
    assert "READ val.bin" not in result.log_tail
    assert result.status == "error" and "held-out file hidden" in result.message, (result.status, result.message)
    honest = run_job(tmp_path, TINY_CAUSAL, spec, "short")               # trained from the tokens in its inputs
    assert honest.status == "ok" and honest.metrics["bits_per_byte"] < 8.0, honest.message


def test_archlab_run_on_lm_end_to_end(tmp_path):
    config = tmp_path / "lab.toml"
    config.write_text('task = "lm"\n[task_options]\nheldout_windows = 16\n')
    command = [sys.executable, "-m", "archlab.cli", "run", "--config", str(config), "--rounds", "1",
               "--short-steps", "20", "--runs-dir", str(tmp_path / "runs"), "--llm", "offline",
               "--sandbox", "process", "--random-pool", "1", "--promote", "0"]
    # one run per baseline: the noise floor's second seeds are `tests/test_noise_floor.py`'s subject, not this one's
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=380,
                          env={**os.environ, "ARCHLAB_LOOP__NOISE_SEEDS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "bits_per_byte" in done.stdout, done.stdout[-3000:]


def test_a_time_matched_budget_trains_for_its_seconds(tmp_path):
    spec = get_task("lm").default_spec(budget="seconds", seconds=3.0, heldout_windows=16)
    assert spec.at("short").data["seconds"] == 3.0 and spec.at("full").data["seconds"] == 12.0
    result = run_job(tmp_path, TINY_CAUSAL, spec, "short")
    assert result.status == "ok", result.message
    assert 3.0 <= result.metrics["train_seconds"] < 5.0 and result.metrics["steps"] > 5, result.metrics
    assert result.metrics["bits_per_byte"] < 8.0
