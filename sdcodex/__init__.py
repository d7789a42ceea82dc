"""Codex: diffusion inference with one core and three faces (CLI, HTTP API, web UI)."""
__version__ = "0.1.0"
