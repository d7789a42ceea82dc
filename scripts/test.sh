#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: installs the venv with test extras and a headless
# Chromium for the browser tests, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
if ! command -v chromium >/dev/null 2>&1 && [ -z "${SDCODEX_CHROMIUM:-}" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing Debian's chromium for the browser tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "test.sh: could not install chromium; browser tests will be skipped" >&2
  fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
# Tests run in parallel over the cores (pytest-xdist), one torch thread per worker; tests that share one external
# instance (the Ray cluster) carry an xdist_group mark and run in one worker. SDCODEX_TEST_WORKERS=0 runs serially.
workers="${SDCODEX_TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}"
if [ "$workers" -gt 1 ] 2>/dev/null; then
  export SDCODEX_THREADS="${SDCODEX_THREADS:-1}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  exec .venv/bin/python -m pytest -n "$workers" --dist loadgroup --durations=25 "$@"
fi
exec .venv/bin/python -m pytest --durations=25 "$@"
