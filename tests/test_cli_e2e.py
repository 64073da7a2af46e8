"""End to end through the real CLI: a 2-round offline run with tiny budgets, then show, runs and eval."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARCHLAB = [sys.executable, "-m", "archlab.cli"]
TINY = {"ARCHLAB_TASK_OPTIONS": json.dumps({"seq_len": 32, "num_pairs": 4, "num_queries": 4, "short_steps": 150}),
        "ARCHLAB_KNOWLEDGE__EMBEDDER": "hashing", "ARCHLAB_EXECUTOR__WORKERS": "2"}   # two candidates per round


def archlab(*args, env=None, timeout=300):
    full_env = {**os.environ, **TINY, **(env or {}), "COLUMNS": "200"}
    return subprocess.run([*ARCHLAB, *args], capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=timeout)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    proc = archlab("run", "--task", "mqar", "--rounds", "2", "--seed", "3", "--runs-dir", str(runs))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = next(runs.iterdir())
    return runs, run_dir, proc.stdout


def test_run_prints_id_first_and_ends_with_the_table(finished_run):
    runs, run_dir, out = finished_run
    first = out.strip().splitlines()[0]
    assert first.startswith(f"run {run_dir.name}") and str(run_dir) in first
    for column in ("id", "parent", "change", "accuracy", "loss", "params", "status"):
        assert column in out
    assert "c001" in out and "c002" in out and "b-mlp" in out
    assert f"run written to {run_dir}" in out.replace("\n", "")


def test_run_directory_holds_everything(finished_run):
    runs, run_dir, _ = finished_run
    record = json.loads((run_dir / "run.json").read_text())
    assert record["settings"]["rounds"] == 2 and record["settings"]["seed"] == 3
    assert (run_dir / "checkpoints.sqlite").stat().st_size > 0
    assert (run_dir / "knowledge").is_dir()
    for cid in ("b-softmax", "b-linear", "b-mlp", "c001", "c002"):
        directory = run_dir / "candidates" / cid
        assert (directory / "candidate.py").is_file() and (directory / "result.json").is_file()
        assert (directory / "log.txt").is_file()
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    types = [e["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert [e["seq"] for e in events] == list(range(len(events)))
    retrievals = [e for e in events if e["type"] == "retrieval"]
    assert len(retrievals) >= 2 and retrievals[-1]["payload"]["finding_ids"]   # round 2 retrieves round 1's finding
    rounds: dict[int, list[str]] = {}
    for e in events:
        if e["type"] == "parents_selected":
            rounds.setdefault(e["payload"]["round"], []).extend(e["payload"]["candidate_ids"])
    assert rounds == {1: ["c001", "c002"], 2: ["c003", "c004"]}      # two rounds of two candidates
    assert sum(t == "finding" for t in types) == 4


def test_candidates_beat_the_mlp_floor_and_analyses_cite_numbers(finished_run):
    runs, run_dir, _ = finished_run
    c = {p.parent.name: json.loads(p.read_text()) for p in (run_dir / "candidates").glob("*/candidate.json")}
    mlp = c["b-mlp"]["evaluations"]["short"]["metrics"]["accuracy"]
    soft = c["b-softmax"]["evaluations"]["short"]["metrics"]["accuracy"]
    assert soft > mlp + 0.2                                 # attention recalls, the MLP cannot
    for cid in ("c001", "c002"):
        assert c[cid]["analysis"] and c[cid]["parent_ids"]
        if c[cid]["status"] == "evaluated":
            assert f"{c[cid]['evaluations']['short']['metrics']['accuracy']:.3f}" in c[cid]["analysis"]


def test_show_and_runs_list_the_run(finished_run):
    runs, run_dir, _ = finished_run
    show = archlab("show", run_dir.name[:12], "--runs-dir", str(runs))
    assert show.returncode == 0 and "c002" in show.stdout
    listing = archlab("runs", "--runs-dir", str(runs))
    assert run_dir.name in listing.stdout and "finished" in listing.stdout


def test_eval_prints_json_for_good_and_bad_candidates(tmp_path):
    good = archlab("eval", str(ROOT / "evaluators" / "baselines" / "softmax_attention.py"), "--task", "mqar")
    assert good.returncode == 0, good.stderr
    result = json.loads(good.stdout)
    assert result["status"] == "ok" and result["metrics"]["params"] > 0
    bad = tmp_path / "bad.py"
    bad.write_text("def build_model(spec):\n    raise RuntimeError('nope')\n")
    out = archlab("eval", str(bad), "--task", "mqar")
    assert out.returncode == 0
    assert json.loads(out.stdout)["status"] == "error"


def test_bad_settings_are_refused_before_anything_starts(tmp_path):
    out = archlab("run", "--task", "nope", "--runs-dir", str(tmp_path))
    assert out.returncode == 2 and "unknown task 'nope'" in out.stderr
    out = archlab("run", "--rounds", "-2", "--runs-dir", str(tmp_path))
    assert out.returncode == 2 and "rounds" in out.stderr
    assert not any(tmp_path.iterdir())


def test_docker_asked_for_but_unreachable_is_refused_before_the_run_starts(tmp_path):
    out = archlab("run", "--sandbox", "docker", "--runs-dir", str(tmp_path),
                  env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert out.returncode == 2
    assert "cannot reach the Docker Engine" in out.stderr
    assert not any(tmp_path.iterdir())


def test_eval_proxy_fidelity_reports_zero_cost_proxies():
    out = archlab("eval", str(ROOT / "evaluators" / "baselines" / "linear_attention.py"), "--fidelity", "proxy")
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)["metrics"]
    for name in ("params", "flops", "synflow", "snip", "grad_norm", "naswot", "wpca"):
        assert name in metrics


# `archlab runs`, `show` and `review` only read files: they must not pay torch's import (seconds)
NO_TORCH = ("import sys\nsys.argv = ['archlab', *sys.argv[1:]]\nfrom archlab.cli import app\n"
            "try:\n    app()\nexcept SystemExit as exc:\n    code = exc.code\nelse:\n    code = 0\n"
            "print('torch imported' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)\n"
            "sys.exit(code)\n")


@pytest.mark.parametrize("command", ["runs", "show", "review"])
def test_reading_commands_do_not_import_torch(finished_run, command):
    runs, run_dir, _ = finished_run
    args = [] if command == "runs" else [run_dir.name]
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, command, *args, "--runs-dir", str(runs)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **TINY}, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch not imported" in proc.stderr, proc.stderr
    assert (run_dir.name if command == "runs" else "c001" if command == "show" else "nothing waits") in proc.stdout


def test_sandbox_image_is_a_setting_that_reaches_the_sandbox_and_run_json(monkeypatch, tmp_path):
    from archlab.sandboxes import make_sandbox
    from archlab.session import start_run
    from archlab.settings import load_settings
    from sandbox.docker_backend import DockerSandbox
    monkeypatch.setenv("ARCHLAB_SANDBOX__IMAGE", "archlab-sandbox:test")
    settings = load_settings(None, sandbox__backend="docker", runs_dir=tmp_path)
    assert settings.sandbox.image == "archlab-sandbox:test"
    asked = {}
    monkeypatch.setattr(DockerSandbox, "connect", classmethod(lambda cls, image=None, gpus=None: asked.update(image=image)))
    make_sandbox(settings)
    assert asked == {"image": "archlab-sandbox:test"}
    monkeypatch.delenv("ARCHLAB_SANDBOX__IMAGE")
    _, run_dir = start_run(settings)
    assert json.loads((run_dir / "run.json").read_text())["settings"]["sandbox"]["image"] == "archlab-sandbox:test"


def _copy_of(run_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    import shutil
    runs = tmp_path / "runs"
    copy = runs / run_dir.name
    shutil.copytree(run_dir, copy)
    return runs, copy


def test_resume_config_moves_the_llm_endpoint_and_sandbox_and_records_it(finished_run, tmp_path):
    runs, copy = _copy_of(finished_run[1], tmp_path)
    config = tmp_path / "moved.toml"
    config.write_text('[llm]\nbase_url = "http://127.0.0.1:9/v1"\nplanner_model = "moved-model"\n\n'
                      '[sandbox]\nmemory_mb = 3072\n')
    before = json.loads((copy / "run.json").read_text())["settings"]
    out = archlab("resume", copy.name, "--runs-dir", str(runs), "--config", str(config),
                  env={"OPENAI_API_KEY": "sk-never-written-anywhere"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "llm.base_url" in out.stdout
    record = json.loads((copy / "run.json").read_text())
    assert record["settings"]["llm"]["base_url"] == "http://127.0.0.1:9/v1"
    assert record["settings"]["llm"]["planner_model"] == "moved-model"
    assert record["settings"]["sandbox"]["memory_mb"] == 3072
    assert {k: v for k, v in record["settings"].items() if k not in ("llm", "sandbox")} == \
        {k: v for k, v in before.items() if k not in ("llm", "sandbox")}
    expected = {"llm.base_url", "llm.planner_model", "sandbox.memory_mb"}
    assert set(record["overrides"][-1]["changed"]) == expected
    log = [json.loads(line) for line in (copy / "events.jsonl").read_text().splitlines()]
    overridden = [e for e in log if e["type"] == "settings_overridden"]
    assert len(overridden) == 1 and set(overridden[0]["payload"]["changed"]) == expected
    assert overridden[0]["payload"]["changed"]["sandbox.memory_mb"] == {"from": before["sandbox"]["memory_mb"],
                                                                        "to": 3072}
    assert [e["type"] for e in log].index("settings_overridden") < max(
        i for i, e in enumerate(log) if e["type"] == "run_resumed")
    for path in (copy / "events.jsonl", copy / "run.json"):
        assert "sk-never-written-anywhere" not in path.read_text()


def test_resume_config_is_what_the_resumed_run_uses(finished_run, tmp_path):
    runs, copy = _copy_of(finished_run[1], tmp_path)
    config = tmp_path / "docker.toml"
    config.write_text('[sandbox]\nbackend = "docker"\n')
    out = archlab("resume", copy.name, "--runs-dir", str(runs), "--config", str(config),
                  env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert out.returncode == 2 and "cannot reach the Docker Engine" in out.stderr, out.stdout + out.stderr


@pytest.mark.parametrize("text, named", [
    ('[loop]\nexplore = 0.5\n', "[loop]"),
    ('rounds = 9\n[llm]\nbase_url = "http://127.0.0.1:9/v1"\n', "'rounds'"),
    ('[llm]\napi_key = "sk-a-key-in-a-file"\n', "llm.api_key"),
    ('[sandbox]\nmemory_mb = 1\n', "sandbox.memory_mb"),
])
def test_resume_config_refuses_anything_but_llm_and_sandbox(finished_run, tmp_path, text, named):
    runs, copy = _copy_of(finished_run[1], tmp_path)
    config = tmp_path / "other.toml"
    config.write_text(text)
    before = {p: (copy / p).read_bytes() for p in ("run.json", "events.jsonl")}
    out = archlab("resume", copy.name, "--runs-dir", str(runs), "--config", str(config))
    assert out.returncode == 2, out.stdout + out.stderr
    assert named in out.stderr and "sk-a-key-in-a-file" not in out.stderr + out.stdout
    assert {p: (copy / p).read_bytes() for p in before} == before
