"""Digit classification on scikit-learn's bundled 8x8 images (1,797 of them), for vision blocks.

Contract: `build_model(spec)` maps images [B, 1, 8, 8] (float, pixel values scaled to [0, 1])
to logits [B, 10]; `check` also refuses models whose output for one image depends on the
others in the batch (`evaluators.contracts.check_vision`).

The split is fixed: a permutation from `split_seed` (0) holds out `heldout_size` (360, 20%)
images. Only the training images and labels are written into a job (`sandbox_files`); the
held-out images go in as inputs and their labels stay on the host, which scores `accuracy`
(higher is better) and `heldout_loss` from the returned logits. Inside the sandbox the task
never imports scikit-learn: it trains on the arrays the host wrote.

The dataset ships with scikit-learn, labels included, so the task declares scikit-learn's
data directory in `host_only_paths`: every job runs with it hidden (`Limits.hidden_paths`),
and a candidate that calls `load_digits` or opens the file finds nothing.

What this does not hide: another copy of the same public data that the process sandbox can
read elsewhere on the machine (a scikit-learn wheel in a local package cache, another
environment); the docker backend sees only the interpreter and environment it mounts.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
from pydantic import Field

from evaluators.tasks.base import Task, TaskOptions
from evaluators.tasks.lazy import torch
from wire.task import Budget, TaskSpec

NUM_IMAGES = 1797


def load_split(split_seed: int, heldout_size: int) -> dict[str, np.ndarray]:
    """The fixed split: train/held-out images [N, 1, 8, 8] float32 in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits  # host side only

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[:, None]          # [1797, 1, 8, 8]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(split_seed).permutation(len(labels))
    held, train = order[:heldout_size], order[heldout_size:]
    return {"train_images": images[train], "train_labels": labels[train],
            "heldout_images": images[held], "heldout_labels": labels[held]}


def sklearn_data_dir() -> str:
    """scikit-learn's bundled data sets (digits.csv.gz among them), found without importing scikit-learn."""
    found = importlib.util.find_spec("sklearn")
    if found is None or not found.submodule_search_locations:
        raise ValueError("the digits task needs scikit-learn on the host: pip install scikit-learn")
    return str(Path(list(found.submodule_search_locations)[0]).resolve() / "datasets" / "data")


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


class DigitsOptions(TaskOptions):
    split_seed: int = Field(0, description="seed of the train / held-out split")
    heldout_size: int = Field(360, ge=10, le=NUM_IMAGES // 2, description="held-out images")
    short_steps: int = Field(100, ge=1, description="training steps at the short fidelity")
    full_steps: int = Field(1000, ge=1, description="training steps at the full fidelity")


BASELINE_MLP = '''"""A two-layer perceptron over the flattened image: the digits baseline."""
import torch


def build_model(spec):
    c, h, w = int(spec.data["channels"]), int(spec.data["height"]), int(spec.data["width"])
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * h * w, 64), torch.nn.GELU(),
                               torch.nn.Linear(64, spec.num_classes))
'''


class Digits(Task):
    name = "digits"
    summary = "8x8 handwritten digits (scikit-learn's copy of UCI), classified by an image model"
    metric = "accuracy"
    Options = DigitsOptions

    def __init__(self):
        self._arrays: dict[str, dict[str, np.ndarray]] = {}   # data sha256 -> arrays

    def baselines(self, spec: TaskSpec) -> dict[str, tuple[dict, str]]:
        return {"mlp": ({}, BASELINE_MLP)}

    def spec(self, options: DigitsOptions) -> TaskSpec:
        split_seed, heldout_size = options.split_seed, options.heldout_size
        budgets = {
            "check": Budget(steps=1, batch_size=4, lr=1e-3),
            "short": Budget(steps=options.short_steps, batch_size=64, lr=3e-3),
            "full": Budget(steps=options.full_steps, batch_size=64, lr=3e-3),
        }
        arrays = load_split(split_seed, heldout_size)
        sha = _digest(arrays)
        self._arrays[sha] = arrays
        return TaskSpec(name=self.name, family="vision", num_classes=10,
                        data={"split_seed": split_seed, "channels": 1, "height": 8, "width": 8, "data_sha256": sha},
                        seed=0, heldout_size=heldout_size, budgets=budgets)

    def _data(self, spec: TaskSpec) -> dict[str, np.ndarray]:
        sha = str(spec.data["data_sha256"])
        if sha not in self._arrays:
            arrays = load_split(int(spec.data["split_seed"]), spec.heldout_size)
            if _digest(arrays) != sha:
                raise ValueError("the installed scikit-learn digits differ from the spec's (data_sha256 mismatch); "
                                 "make a new spec")
            self._arrays[sha] = arrays
        return self._arrays[sha]

    def sandbox_files(self, spec: TaskSpec) -> dict[str, np.ndarray]:
        data = self._data(spec)
        return {"images": data["train_images"], "labels": data["train_labels"]}

    def attach(self, spec: TaskSpec, files: dict[str, np.ndarray]) -> None:
        if "images" in files and "labels" in files:
            self._arrays[str(spec.data["data_sha256"])] = {"train_images": files["images"].astype(np.float32),
                                                           "train_labels": files["labels"].astype(np.int64)}

    def example_input(self, spec: TaskSpec, batch_size: int, seed: int) -> torch.Tensor:
        images = self._data(spec)["train_images"]
        index = torch.randint(0, len(images), (batch_size,), generator=torch.Generator().manual_seed(seed))
        return torch.from_numpy(images)[index]

    def train_batch(self, spec: TaskSpec, generator: torch.Generator, batch_size: int):
        data = self._data(spec)
        index = torch.randint(0, len(data["train_labels"]), (batch_size,), generator=generator)
        return torch.from_numpy(data["train_images"])[index], torch.from_numpy(data["train_labels"])[index]

    def host_only_paths(self, spec: TaskSpec) -> tuple[str, ...]:
        return (sklearn_data_dir(),)

    def heldout(self, spec: TaskSpec, secret: bytes) -> tuple[dict[str, np.ndarray], np.ndarray]:
        data = self._data(spec)
        if "heldout_labels" not in data:
            raise RuntimeError("held-out labels are not available here (inside the sandbox); heldout() is host side")
        return {"images": data["heldout_images"]}, data["heldout_labels"]

    def predict(self, model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
        images = torch.from_numpy(inputs["images"]).float()
        device = next(model.parameters()).device
        with torch.no_grad():
            logits = [model(images[s:s + 128].to(device)).float().cpu() for s in range(0, len(images), 128)]
        return torch.cat(logits).numpy().astype(np.float32)

    def expected_prediction_shape(self, spec: TaskSpec) -> tuple[int, ...]:
        return (spec.heldout_size, spec.num_classes)

    def score(self, spec: TaskSpec, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        logits = torch.from_numpy(predictions).double()
        labels = torch.from_numpy(targets).long()
        loss = torch.nn.functional.cross_entropy(logits, labels).item()
        return {"accuracy": (logits.argmax(-1) == labels).double().mean().item(), "heldout_loss": loss}
