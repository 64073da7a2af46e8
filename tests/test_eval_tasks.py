"""The charlm and digits tasks: deterministic data, recorded hashes, held-out targets kept on the host and out of reach."""
import hashlib
from pathlib import Path

import numpy as np
import pytest

from evaluators.tasks import get_task, known_names
from evaluators.heldout import check_rule, machine_secret
from evaluators.tasks import textgen
from evaluators.tasks.charlm import CharLM, read_corpus, stdlib_corpus, synthetic_corpus
from evaluators.tasks.digits import sklearn_data_dir
from tests.eval_support import DIGITS_CNN, run_job

from agents.offline.blocks import render

TINY_SEQ = render({"mixer": "softmax", "d_model": 32, "n_layers": 1, "n_heads": 2})


SECRET = b"s" * 32


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    """Random letters: no 33-byte window recurs by chance, so any held-out window found in training text leaked."""
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    rng = np.random.default_rng(0)
    path.write_bytes(bytes(rng.integers(ord("a"), ord("z") + 1, 60_000).astype(np.uint8)) + b"\n")
    return path


@pytest.fixture(scope="module")
def charlm_spec(corpus_file):
    return get_task("charlm").default_spec(corpus=str(corpus_file), seq_len=32, positions=4, heldout_size=32,
                                           short_steps=30)


def test_all_shipped_tasks_are_registered():
    assert {"mqar", "charlm", "digits", "decode", "nb201"} <= set(known_names())
    assert get_task("digits").default_spec().family == "vision"


def test_default_corpus_is_deterministic_cached_and_hashed():
    small = 120_000
    first = synthetic_corpus(small)
    assert len(first) == small and first == synthetic_corpus(small)      # the second call reads the cache
    spec = CharLM().default_spec(corpus_bytes=small)
    assert spec.data["corpus_sha256"] == hashlib.sha256(first).hexdigest()
    assert spec.vocab_size == 256 and spec.data["corpus"] == "synthetic"
    words = first.decode().split()
    assert len(words) > 15_000 and any(w.endswith(".") for w in words)  # words and sentences


def test_default_corpus_cannot_be_rebuilt_from_what_the_sandbox_can_read():
    """The old default (standard-library docstrings) was rebuilt inside the sandbox; this one shares no text with it
    and changes with the host's secret."""
    docstrings = stdlib_corpus()
    corpus = synthetic_corpus(120_000)
    spans = [corpus[i:i + 48] for i in range(0, len(corpus) - 48, 997)]
    assert not any(span in docstrings for span in spans)
    words = textgen.vocabulary(docstrings)
    mine, other = textgen.generate(SECRET, words, 20_000), textgen.generate(b"t" * 32, words, 20_000)
    assert mine == textgen.generate(SECRET, words, 20_000) and mine[:200] != other[:200]
    assert (machine_secret() != SECRET) and synthetic_corpus(20_000) != mine[:20_000]
    with pytest.raises(ValueError, match="cannot hold out the standard library"):
        CharLM().default_spec(corpus="stdlib")


def test_a_named_corpus_is_hashed_and_a_changed_one_refused(corpus_file, charlm_spec, tmp_path):
    assert charlm_spec.data["corpus_sha256"] == hashlib.sha256(corpus_file.read_bytes()).hexdigest()
    copy = tmp_path / "copy.txt"
    copy.write_bytes(corpus_file.read_bytes())
    task = CharLM()
    spec = task.default_spec(corpus=str(copy), seq_len=32)
    copy.write_text("something else entirely\n" * 5000)
    with pytest.raises(ValueError, match="changed since the spec was made"):
        CharLM().example_input(spec, 2, seed=0)
    with pytest.raises(ValueError, match="not a readable file"):
        read_corpus(str(tmp_path / "missing.txt"))


def test_charlm_heldout_targets_are_not_in_the_sandbox_files(charlm_spec):
    task = get_task("charlm")
    inputs, targets = task.heldout(charlm_spec, SECRET)
    assert inputs["tokens"].shape == (32, 4, 32) and targets.shape == (32, 4)
    train = task.sandbox_files(charlm_spec)["corpus"]
    text = bytes(train)
    held = [bytes(w.astype(np.uint8)) + bytes([t]) for w, t in zip(inputs["tokens"].reshape(-1, 32), targets.ravel())]
    assert not [w for w in held if w in text]                             # not one held-out window is training text
    assert all(text[i:i + 33] in text for i in range(0, 3000, 300))       # (the search does find training windows)
    other, _ = task.heldout(charlm_spec, b"t" * 32)
    assert not np.array_equal(other["tokens"], inputs["tokens"])          # where windows are cut is the host's secret
    assert task.host_only_paths(charlm_spec) == (charlm_spec.data["corpus"],)   # the user's file is hidden from jobs
    check_rule(task, charlm_spec)
    sandbox_side = CharLM()
    sandbox_side.attach(charlm_spec, {"corpus": train})
    with pytest.raises(RuntimeError, match="host side"):
        sandbox_side.heldout(charlm_spec, SECRET)
    x, y = sandbox_side.train_batch(charlm_spec, __import__("torch").Generator().manual_seed(0), 3)
    assert tuple(x.shape) == (3, 32) and (x[:, 1:] == y[:, :-1]).all()


def test_charlm_trains_in_the_sandbox_and_is_scored_on_the_host(tmp_path, charlm_spec):
    result = run_job(tmp_path, TINY_SEQ, charlm_spec, "short")
    assert result.status == "ok", result.message
    assert 0 <= result.metrics["accuracy"] <= 1
    assert result.metrics["bits_per_char"] == pytest.approx(result.metrics["heldout_loss"] / np.log(2))
    assert result.metrics["bits_per_char"] < 8.0                          # better than uniform over bytes
    assert not list((tmp_path).rglob("heldout_targets*"))


@pytest.fixture(scope="module")
def digits_spec():
    return get_task("digits").default_spec(short_steps=60)


def test_digits_split_is_fixed_and_labels_stay_on_the_host(digits_spec):
    task = get_task("digits")
    inputs, labels = task.heldout(digits_spec, SECRET)
    again, labels2 = task.heldout(task.default_spec(), SECRET)
    assert task.host_only_paths(digits_spec) == (sklearn_data_dir(),)    # the public labels are hidden from jobs
    assert (Path(sklearn_data_dir()) / "digits.csv.gz").is_file()
    assert np.array_equal(inputs["images"], again["images"]) and np.array_equal(labels, labels2)
    assert inputs["images"].shape == (360, 1, 8, 8) and labels.shape == (360,)
    files = task.sandbox_files(digits_spec)
    assert set(files) == {"images", "labels"} and len(files["labels"]) == 1797 - 360


def test_digits_contract_and_training_in_the_sandbox(tmp_path, digits_spec):
    good = run_job(tmp_path, DIGITS_CNN, digits_spec, "short")
    assert good.status == "ok", good.message
    assert good.metrics["accuracy"] > 0.5 and good.metrics["flops_per_image"] > 0
    inputs = sorted(p.name for p in (tmp_path / good.job_id / "inputs").iterdir())
    assert inputs == ["candidate.py", "heldout_images.npy", "train_images.npy", "train_labels.npy"]


@pytest.mark.parametrize("change, message", [
    ("spec.num_classes), nn.Unflatten(1, (10, 1))", "expected logits of shape (4, 10) = [batch, num_classes]"),
    ("spec.num_classes), Mix()", "samples mix across the batch"),
])
def test_digits_contract_violations_are_refused(tmp_path, digits_spec, change, message):
    source = DIGITS_CNN.replace("spec.num_classes))", change + ")") + '''

class Mix(nn.Module):
    def forward(self, x):
        return x - x.mean(dim=0, keepdim=True)
'''
    result = run_job(tmp_path, source, digits_spec, "check")
    assert result.status == "invalid" and message in result.message
