"""The HTTP server: one FastAPI app with the native, A1111 and OpenAI-style APIs over the job queue."""
from .app import create_app
from .service import CodexService, ServerSettings

__all__ = ["CodexService", "ServerSettings", "create_app"]
