"""NAS-Bench-201 as a task: a candidate names a cell, an evaluation looks its accuracy up in a table the user gives.

NAS-Bench-201 (Dong & Yang, ICLR 2020) trained every one of its 15,625 cells (six edges, five
ops each; `evaluators.nb201`) and published their accuracies, so a search policy can be tried
in seconds: an "evaluation" is a table lookup. The table is a JSON file (option `table`; by
default `shared/data/nas-benchmarks/nb201_val_accuracy.json` next to the checkout):

    {"architectures": [{"arch": [0, 0, 0, 0, 0, 0], "val_accuracy": {"cifar10": 39.98, ...}}, ...]}

`arch` is a genome (six op indices in `evaluators.nb201.EDGES` order, ops indexed as in
`OPS`, NASLib's encoding) or an arch string; `val_accuracy` maps each dataset to the
validation accuracy in percent. It must hold every cell, for the `dataset` chosen.

Candidate contract: a module with a top-level `cell(spec) -> str`, the cell in the benchmark's
own notation, e.g. `|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`.

Where each part runs:
- in the sandbox (`run_in_sandbox`): the candidate's `cell(spec)` is called and its answer
  parsed (anything else is `invalid`, with the parser's message); every fidelity reports the
  cell's `params` and `flops` (`cell_costs`, counted as `evaluators.nb201` counts them) and, at
  `check`, a functional hash of the cell (two modules naming one cell are one candidate);
  `short` and `full` return the cell as predictions: a [6, 5] one-hot array, edge by op.
- on the host (`score`): the op of each edge is the row's argmax, so any finite array of that
  shape names exactly one cell and nothing the sandbox writes can break the lookup; the
  metric `val_accuracy` is the table's, and `params` / `flops` are recomputed here.
- the answers stay out of the candidate's reach: the table is declared in `host_only_paths`,
  so every job runs with it hidden (with the default table, its whole directory: NASLib's
  `zc_nasbench201.json` beside it holds the same accuracies). Copies elsewhere are the user's
  to hide (option `hide`). There are no held-out inputs: `heldout` returns none.

Fidelities: the table has one number per cell (after NAS-Bench-201's 200 epochs), so `short`
and `full` look up the same value; `check` only validates. There are no zero-cost proxies
(`run_defaults` turns the proxy rung off). What this task does not do: train anything, or
read the table inside the sandbox.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from evaluators.tasks.base import SandboxOutput, Task, TaskOptions
from evaluators import nb201_cells as nb201
from evaluators.nb201_cells import CELLS_PER_STAGE, CHANNELS, EDGES, INPUT_SIZE, NUM_CLASSES, OPS
from wire.task import SCREENING, TRAINING, Budget, RunDefaults, TaskSpec

CELLS = len(OPS) ** len(EDGES)                                                # 15,625
SHARED_TABLE = Path(__file__).resolve().parents[3] / "shared/data/nas-benchmarks/nb201_val_accuracy.json"


class NB201Options(TaskOptions):
    table: str | None = Field(None, description="the NAS-Bench-201 table, a JSON file (default: shared/data/"
                                                 "nas-benchmarks/nb201_val_accuracy.json next to the checkout)")
    dataset: str = Field("cifar10", description="which of the table's datasets the accuracy is read for")
    hide: list[str] = Field(default_factory=list, description="more files or directories hidden from every job "
                                                              "(other copies of the table's answers)")

    @field_validator("table")
    @classmethod
    def _a_file(cls, table: str | None) -> str | None:
        """A table named but missing is said when settings load (its contents are read when the spec is built)."""
        if table is not None and not Path(table).expanduser().is_file():
            raise ValueError(f"no NAS-Bench-201 table at {table}; give the path of its JSON file")
        return table


class NB201(Task):
    name = "nb201"
    summary = "NAS-Bench-201 cells scored by a table lookup: try a search policy in seconds"
    metric = "val_accuracy"
    metrics = ()
    Options = NB201Options
    entry = "cell"
    contract = "cell(spec) -> str (a NAS-Bench-201 arch string)"
    search_space = "nb201-cells"

    def run_defaults(self, options: NB201Options) -> RunDefaults:
        """No proxy rung (a table has no zero-cost proxies); one thread per job (a job parses a string)."""
        return RunDefaults(proxy_rung=False, cpus=1.0)

    def spec(self, options: NB201Options) -> TaskSpec:
        if options.table is None and not SHARED_TABLE.is_file():
            raise ValueError(f"the nb201 task needs a NAS-Bench-201 table and the shared one is not at {SHARED_TABLE}; "
                             "pass its path as task_options.table (lab.toml `[task_options] table = \"...\"`, or "
                             "ARCHLAB_TASK_OPTIONS='{\"table\": \"...\"}')")
        path = Path(options.table).expanduser().resolve() if options.table is not None else SHARED_TABLE
        sha, accuracy = read_table(path)
        if options.dataset not in accuracy:
            raise ValueError(f"the nb201 table {path} has no dataset {options.dataset!r}; it has "
                             f"{', '.join(sorted(accuracy))} (task_options.dataset)")
        # the default table lies beside NASLib's copy of the same answers: hide the directory
        hidden = [str(path.parent if options.table is None else path)]
        hidden += [str(Path(p).expanduser().resolve()) for p in options.hide]
        budget = Budget(steps=200, batch_size=256, lr=0.1)     # the table's training: 200 epochs (informational)
        return TaskSpec(name=self.name, family="tabular", num_classes=NUM_CLASSES.get(options.dataset, 0),
                        data={"table": str(path), "table_sha256": sha, "dataset": options.dataset,
                              "hide": os.pathsep.join(hidden)},
                        seed=0, heldout_size=1, max_params=10_000_000,
                        budgets={"check": budget, "short": budget, "full": budget})

    def contract_rules(self, spec: TaskSpec) -> str:
        return (f"The candidate names one NAS-Bench-201 cell: a 4-node DAG whose six edges each carry one of {OPS}, "
                "written as the benchmark's arch string, one `|op~source|` group per node (node 1 reads node 0; "
                "node 2 reads nodes 0 and 1; node 3 reads nodes 0, 1 and 2), groups joined by '+'. Its score is the "
                f"cell's {spec.data['dataset']} validation accuracy in percent, after the benchmark's training.")

    def contract_text(self, spec: TaskSpec, coder: bool = True) -> str:
        rules = self.contract_rules(spec)
        if not coder:
            return rules
        return (f"A candidate is one self-contained Python module defining a top-level `{self.contract}`. {rules} "
                "For example `def cell(spec): return '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
                "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'`. No imports are needed; no files, network, "
                "processes, exec/eval.")

    # --- host side ----------------------------------------------------------------------------------------
    def host_only_paths(self, spec: TaskSpec) -> tuple[str, ...]:
        return tuple(p for p in str(spec.data["hide"]).split(os.pathsep) if p)

    def heldout(self, spec: TaskSpec, secret: bytes) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """No held-out inputs: the answers are the table's, hidden from every job (`host_only_paths`)."""
        return {}, np.zeros(0)

    def expected_prediction_shape(self, spec: TaskSpec) -> tuple[int, ...]:
        return (len(EDGES), len(OPS))

    def score(self, spec: TaskSpec, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """The table's accuracy of the cell the predictions name (each edge's op: its row's argmax), and its costs."""
        genome = tuple(int(i) for i in np.asarray(predictions).argmax(axis=1))
        return {self.metric: self.lookup(spec, genome), **cell_costs(genome, str(spec.data["dataset"]))}

    def lookup(self, spec: TaskSpec, genome) -> float:
        """Host side: the table's accuracy of `genome` for the spec's dataset (the table read once per process)."""
        sha, accuracy = read_table(Path(str(spec.data["table"])))
        if sha != spec.data["table_sha256"]:
            raise ValueError(f"the nb201 table {spec.data['table']} changed since the run's spec was made (sha256 "
                             f"{sha[:12]}, not {str(spec.data['table_sha256'])[:12]}); start a new run")
        return accuracy[str(spec.data["dataset"])][tuple(genome)]

    # --- sandbox side -------------------------------------------------------------------------------------
    def run_in_sandbox(self, spec: TaskSpec, fidelity: str, seed: int, inputs_dir: Path, out_dir: Path,
                       files: dict, device, clock) -> SandboxOutput:
        """The candidate's cell, validated; its costs; its hash at `check`, and as one-hot predictions at `short` /
        `full`. The table is not read here (it is hidden from the job)."""
        from evaluators.fidelities import load_candidate
        candidate = load_candidate(inputs_dir / "candidate.py", entry=self.entry,
                                   hint=f"the module defines no top-level cell(spec) function; add one that returns "
                                        f"the cell's arch string ({self.contract})")
        genome = cell_of(candidate, spec)
        out = SandboxOutput(metrics=cell_costs(genome, str(spec.data["dataset"])),
                            environment={"cell": nb201.to_arch_str(genome)})
        if fidelity in SCREENING:
            out.functional_hash = hashlib.sha256(bytes(genome)).hexdigest()[:16]
        elif fidelity in TRAINING:
            out.predictions = one_hot(genome)
        return out

    # --- the parts of the Task interface a table has no use for -------------------------------------------
    def example_input(self, spec: TaskSpec, batch_size: int, seed: int):
        raise NotImplementedError("nb201 candidates are cells, not models: there are no inputs")

    def train_batch(self, spec: TaskSpec, generator, batch_size: int):
        raise NotImplementedError("nb201 trains nothing: the table holds the trained accuracies")

    def predict(self, model, inputs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError("nb201 candidates name a cell; run_in_sandbox returns it as predictions")

    def check_contract(self, spec: TaskSpec, model, device) -> dict[str, float]:
        raise NotImplementedError("nb201 candidates are checked by run_in_sandbox")


def cell_of(candidate, spec: TaskSpec) -> tuple[int, ...]:
    """Sandbox side: the genome of the cell `candidate.cell(spec)` names; ContractViolation saying what is wrong."""
    from evaluators.contracts import ContractViolation
    arch = candidate.cell(spec)
    if not isinstance(arch, str):
        raise ContractViolation(f"cell(spec) returned {type(arch).__name__}, not a str: return the cell's arch string, "
                                "such as '|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|'")
    try:
        return nb201.from_arch_str(arch[:1000])
    except ValueError as exc:
        raise ContractViolation(f"cell(spec) returned an invalid arch string: {exc}") from None


def one_hot(genome) -> np.ndarray:
    """[6, 5] float: row e is edge e's op, one-hot (the form `NB201.score` reads back by argmax)."""
    out = np.zeros((len(EDGES), len(OPS)))
    out[np.arange(len(EDGES)), list(genome)] = 1.0
    return out


@functools.lru_cache(maxsize=4)
def _parse_table(path: str, mtime_ns: int, size: int) -> tuple[str, dict[str, dict[tuple[int, ...], float]]]:
    raw = Path(path).read_bytes()
    try:
        rows = json.loads(raw)["architectures"]
        accuracy: dict[str, dict[tuple[int, ...], float]] = {}
        for row in rows:
            arch = row["arch"]
            genome = nb201.from_arch_str(arch) if isinstance(arch, str) else nb201.check_genome(arch)
            for dataset, value in row["val_accuracy"].items():
                accuracy.setdefault(dataset, {})[genome] = float(value)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a NAS-Bench-201 table ({type(exc).__name__}: {exc}); expected JSON "
                         '{"architectures": [{"arch": [six op indices], "val_accuracy": {"cifar10": 91.2, ...}}, ...]} '
                         "(see evaluators.tasks.nb201)") from None
    short = {d: CELLS - len(cells) for d, cells in accuracy.items() if len(cells) < CELLS}
    if short:
        raise ValueError(f"the nb201 table {path} lacks cells: " + ", ".join(f"{d}: {n} of {CELLS} missing"
                                                                               for d, n in sorted(short.items()))
                         + "; it must hold every cell of the space")
    return hashlib.sha256(raw).hexdigest(), accuracy


def read_table(path: Path) -> tuple[str, dict[str, dict[tuple[int, ...], float]]]:
    """Host side: (sha256 of the file, {dataset: {genome: validation accuracy}}); ValueError saying what is wrong."""
    try:
        found = os.stat(path)
    except OSError as exc:
        raise ValueError(f"the nb201 table {path} cannot be read: {exc.strerror}; pass task_options.table") from None
    return _parse_table(str(path), found.st_mtime_ns, found.st_size)


# --- costs -----------------------------------------------------------------------------------------------------

def _op_costs(op: str, channels: int, size: int) -> tuple[int, int]:
    """(parameters, operations) of one edge's op at `channels` on a `size` x `size` map, as `evaluators.nb201`
    counts them (multiply-adds of convolutions, 2 per BN and 1 per ReLU output element, k*k per pooled element)."""
    area = size * size * channels
    if op == "nor_conv_3x3":
        return 9 * channels * channels + 2 * channels, area * (1 + 9 * channels + 2)
    if op == "nor_conv_1x1":
        return channels * channels + 2 * channels, area * (1 + channels + 2)
    if op == "avg_pool_3x3":
        return 0, 9 * area
    return 0, 0                                         # skip_connect and none are free


def _fixed_costs(dataset: str) -> tuple[int, int]:
    """(parameters, operations) of the network around the cells: stem, two residual reductions, head, classifier."""
    c, size, classes = CHANNELS, INPUT_SIZE[dataset], NUM_CLASSES[dataset]
    params = 3 * c * 9 + 2 * c + 2 * 4 * c + 4 * c * classes + classes
    ops = size * size * c * (3 * 9 + 2)
    for c_in, s_in in ((c, size), (2 * c, size // 2)):      # ReLU-Conv3x3/2-BN, ReLU-Conv3x3-BN, AvgPool2 + Conv1x1
        c_out, s_out = 2 * c_in, s_in // 2
        area = s_out * s_out * c_out
        params += 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out + c_in * c_out
        ops += s_in * s_in * c_in + area * (9 * c_in + 2) + area * (1 + 9 * c_out + 2)
        ops += 4 * s_out * s_out * c_in + area * c_in
    last = size // 4
    ops += last * last * 4 * c * 3 + 4 * c * classes              # head BN + ReLU, classifier
    return params, ops


def cell_costs(genome, dataset: str = "cifar10") -> dict[str, float]:
    """`params` (every parameter) and `flops` (operations of one forward pass of one image, `evaluators.nb201`'s
    count) of the benchmark's network around `genome`, in plain arithmetic: no network is built."""
    dataset = dataset if dataset in NUM_CLASSES else "cifar10"
    params, ops = _fixed_costs(dataset)
    for stage in range(3):
        channels, size = CHANNELS * 2 ** stage, INPUT_SIZE[dataset] // 2 ** stage
        for op in genome:
            p, f = _op_costs(OPS[op], channels, size)
            params, ops = params + CELLS_PER_STAGE * p, ops + CELLS_PER_STAGE * f
    return {"params": float(params), "flops": float(ops)}
