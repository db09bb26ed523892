"""cafe-agent: the inspector-device service that receives signed probe reports (issue 3).

Modules: ``settings`` (data directory), ``db`` (tables, engine, migration),
``audit`` (append-only hash-chained log), ``auth`` (officers, sessions, probe
keys), ``cases`` (the case view and the officers' changes), ``api`` (JSON API
under /v1), ``ocsf`` (OCSF export), ``app`` (the app factory), ``cli``
(``cafe-agent``); the web UI (``web``) and the PDF (``casefile``) render cases.
"""

from __future__ import annotations

__all__ = ["ApiError"]


class ApiError(Exception):
    """A refusal with an HTTP status, a stable machine code and a "中文 / English" message.

    The app turns it into ``{"error": code, "message": message}``; the CLI prints the message.
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
