#!/usr/bin/env bash
# Run any command inside the project's virtualenv (.venv at the repo root), e.g.:
#   tools/run-cmd.sh sdcodex models list
#   tools/run-cmd.sh python -c "import torch; print(torch.__version__)"
# SDCODEX_VENV overrides the virtualenv folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SDCODEX_VENV:-$ROOT/.venv}"
if [ ! -f "$VENV/bin/activate" ]; then
  echo "run-cmd: no virtualenv at $VENV; install Codex first: ./scripts/install.sh" >&2
  exit 2
fi
if [ "$#" -eq 0 ]; then
  echo "usage: tools/run-cmd.sh COMMAND [ARGS...]   (runs COMMAND inside $VENV)" >&2
  exit 2
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
exec "$@"
