#!/usr/bin/env bash
# Start the Codex server and web UI from the project's virtualenv (.venv at the repo root).
# Every argument is passed to `sdcodex serve`, e.g.: tools/start-ui.sh --port 7860 --api-auth user:pass
# SDCODEX_VENV overrides the virtualenv folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SDCODEX_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "start-ui: no virtualenv at $VENV; install Codex first: ./scripts/install.sh" >&2
  exit 2
fi
if [ -x "$VENV/bin/sdcodex" ]; then
  exec "$VENV/bin/sdcodex" serve "$@"
fi
exec env PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$VENV/bin/python" -m sdcodex.cli.main serve "$@"
