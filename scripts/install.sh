#!/usr/bin/env bash
# Install Codex into ./.venv (idempotent). Usage: scripts/install.sh [--test]  (--test: extras test and ray)
# Pins every package with constraints.txt; torch is the CPU build 2.13.0 unless TORCH_INDEX_URL says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
EXTRAS=""
# --test: the test extras and the Ray extra (the Ray Serve backend's tests run in the suite)
[ "${1:-}" = "--test" ] && EXTRAS="[test,ray]"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.sdcodex-install-$(cat pyproject.toml constraints.txt scripts/install.sh | sha256sum | cut -c1-16)${EXTRAS:+-test}"
if [ -f "$stamp" ]; then
  exit 0
fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q -c constraints.txt)
pip_install() {
  # Some machines' pip configs name extra local indexes that do not exist; drop those warnings only.
  "${PIP[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  # e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 for a CUDA build of the pinned version
  pip_install --index-url "$TORCH_INDEX_URL" "torch==$(grep -E '^torch==' constraints.txt | cut -d= -f3 | cut -d+ -f1)"
fi
pip_install -e ".${EXTRAS}"
# No CPU torchvision exists for this torch: these are installed without their dependencies.
pip_install --no-deps spandrel open-clip-torch controlnet-aux
if .venv/bin/python -c "import torchvision" 2>/dev/null; then
  echo "install.sh: torchvision got installed; it breaks the CPU torch here. Removing it." >&2
  .venv/bin/python -m pip uninstall -y -q torchvision
fi
rm -f .venv/.sdcodex-install-*
touch "$stamp"
echo "Codex installed in .venv"
