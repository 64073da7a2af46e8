"""The documentation: the site builds strictly, its generated pages hold what the code and the results say,
the README stays a front door, and no relative link in the README or the docs points nowhere."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
# a markdown link or image: [text](target) / ![alt](target), the target up to a space or the closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", DOCS / "hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built as CI builds it: `mkdocs build --strict` (any warning fails)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def _text(page: Path) -> str:
    return re.sub(r"<[^>]+>", " ", page.read_text())


def test_the_site_builds_strictly_with_every_page(site):
    for page in ["index.html", "guides/first-run/index.html", "tasks/index.html", "reference/settings/index.html",
                 "reference/api/agents/index.html", "benchmarks/index.html"]:
        assert (site / page).is_file(), page
    assert not (site / "_notes").exists(), "docs/_notes is for the lead to place, not a page yet"


def test_the_settings_reference_lists_every_setting_of_the_models(site):
    from archlab.settings import Settings
    from pydantic import BaseModel

    text = _text(site / "reference" / "settings" / "index.html")
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for sub in model.model_fields:
                assert f"ARCHLAB_{name.upper()}__{sub.upper()}" in text, f"{name}.{sub}"
        else:
            assert f"ARCHLAB_{name.upper()}" in text, name


def test_measured_tables_show_the_figures_the_benchmarks_wrote(site):
    decode = json.loads((RESULTS / "decode_techniques.json").read_text())
    text = _text(site / "benchmarks" / "decoding" / "index.html")
    for technique in decode["techniques"].values():
        row = f"{technique['speedup']:.2f} [{technique['speedup_ci_low']:.2f}, {technique['speedup_ci_high']:.2f}]"
        assert row in text, row
    for png in RESULTS.glob("*.png"):          # the plots are laid into the site beside the benchmark pages
        assert (site / "benchmarks" / "results" / png.name).is_file(), png.name


def test_the_api_reference_is_rendered_from_the_docstrings(site):
    text = _text(site / "reference" / "api" / "wire" / "index.html")
    assert "EvalJob" in text and "EvalResult" in text
    import wire.jobs
    first_line = wire.jobs.__doc__.strip().splitlines()[0]
    assert first_line[:40] in re.sub(r"\s+", " ", text)


def test_a_measured_block_naming_a_missing_field_fails_the_build():
    measured = _hook("measured")
    with pytest.raises(measured.SpecError, match="nope"):
        measured.table({"source": "decode_techniques", "rows": "techniques", "columns": {"x": "{nope}"}})
    with pytest.raises(measured.SpecError, match="no results file"):
        measured.table({"source": "no_such_benchmark", "all": True})


def test_the_readme_is_a_front_door_under_200_lines():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines"
    # the test command CI runs, as the README gives it
    assert "make test   # set up .venv if needed, then the test suite (what CI runs)" in lines


def _markdown_files() -> list[Path]:
    files = [ROOT / "README.md"]
    files += [p for p in DOCS.rglob("*.md") if "_notes" not in p.relative_to(DOCS).parts]
    return files


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = []
    for page in _markdown_files():
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)     # code blocks hold no links
        for target in LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue                                                   # a URL, or an anchor on the same page
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if path.parent == DOCS / "benchmarks" / "results":             # the plots the measured hook lays there
                path = RESULTS / path.name
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "links to nothing:\n" + "\n".join(broken)
