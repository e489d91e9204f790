#!/usr/bin/env bash
# Install the cascade-ci of one checkout (ROOT: where its pyproject.toml and uv.lock are) into the
# virtual environment VENV, exactly as uv.lock pins it: `uv sync --frozen`, never a fresh resolution.
# Used by actions/setup (ROOT = the action's own checkout, so the CLI version is the action's ref) and
# by bench/setup_install.py. Needs python3 (PYTHON) on PATH; installs uv from PyPI when it is missing.
# Usage: install.sh ROOT VENV [PYTHON]
set -euo pipefail
root=$1
venv=$2
python=${3:-python3}
uv_version=0.13.9  # the uv pinned for every install (PyPI: uv)

if ! command -v uv >/dev/null 2>&1; then
  tools="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/cascade-uv-$uv_version"
  if [ ! -x "$tools/bin/uv" ]; then
    "$python" -m venv "$tools"
    "$tools/bin/python" -m pip install --disable-pip-version-check --quiet "uv==$uv_version"
  fi
  PATH="$tools/bin:$PATH"
fi

# The lockfile decides every version; the project is installed as a package (not editable), with the
# production extras (Trino, dlt) and no development tools.
UV_PROJECT_ENVIRONMENT="$venv" uv sync \
  --project "$root" --frozen --no-dev --no-editable --extra trino --extra dlt \
  --python "$python" --quiet
