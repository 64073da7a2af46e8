# The two commands of the README. Each creates (or reuses) the project virtual environment and installs what it needs.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
ROUNDS ?= 3   # 2 candidates per round on 2 cores: 3 baselines, 3 random references, 6 proposals
# the demo task: language modelling at the lm ladder's bottom rung (scale 0), where a random architecture in round 0
# does not saturate the metric (MQAR's did), so the run's last lines can say whether search beat random
TASK ?= lm
RANDOM_POOL ?= 3
# pytest-xdist workers for `make test` (0: one process); a module runs on one worker, all docker tests on one
# (tests/conftest.py), the costliest first; each worker's in-process torch gets its share of the cores
TEST_WORKERS ?= 2

.PHONY: run test lint install clean-runs docs

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned, so nothing pulls a multi-GB CUDA build where a CPU wheel is at hand
	$(PY) -m pip install -q "torch==2.13.0" || $(PY) -m pip install -q "torch>=2.4,<3"
	$(PY) -m pip install -q -e ".[embed,dev]"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/archlab run --task $(TASK) --rounds $(ROUNDS) --random-pool $(RANDOM_POOL)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: install lint
	$(PY) -m pytest -q -rs -n $(TEST_WORKERS) --dist loadfile

# the documentation site, built strictly (a broken link, a missing results file or an undocumented setting fails)
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean-runs:
	rm -rf runs/*/
