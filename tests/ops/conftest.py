"""Shared fixtures for the operator-tool tests: leave the "sdcodex" logger as it was after each test."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so tests can `import fakehub`


@pytest.fixture(autouse=True)
def _reset_sdcodex_logging():
    yield
    logger = logging.getLogger("sdcodex")
    for handler in [h for h in logger.handlers if getattr(h, "_sdcodex_handler", False)]:
        logger.removeHandler(handler)
        handler.close()
