#!/usr/bin/env bash
# Write a debug zip (environment, settings, logs, models, jobs; secrets redacted) for a bug report.
# Every argument is passed to `sdcodex export-debug`, e.g.: tools/export-debug.sh --out debug.zip --log-lines 2000
# SDCODEX_VENV overrides the virtualenv folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SDCODEX_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "export-debug: no virtualenv at $VENV; install Codex first: ./scripts/install.sh" >&2
  exit 2
fi
if [ -x "$VENV/bin/sdcodex" ]; then
  exec "$VENV/bin/sdcodex" export-debug "$@"
fi
exec env PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$VENV/bin/python" -m sdcodex.cli.main export-debug "$@"
