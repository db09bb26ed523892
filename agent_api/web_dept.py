"""What the department pages (/ui/registry, /ui/plans, /ui/draws, /ui/results) share: page frame, refusals, fields.

The pages follow the report pages of agent_api.web: every page needs a live
session, every post its CSRF token, nothing runs in the browser. A post that
succeeds redirects to its page with a notice chosen by a fixed code (nothing
from the query string reaches the page); a post refused (ApiError) shows the
same page again with the refusal on top, with the refusal's status and, for
an import or a registry entry, every problem by row and column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from agent_api import ApiError, draws
from agent_api.audit import now, officer_actor
from agent_api.db import WebSession
from agent_api.dept_tables import Draw
from agent_api.web import base_context, form_text, render_page

__all__ = ["PER_PAGE", "Pager", "render", "message", "refused", "done", "notice", "today", "posted", "form_date",
           "form_int", "form_choice", "path_part", "on_draw", "SECRET_FIELDS"]

PER_PAGE = 50
# Never sent back into a page re-shown after a refusal.
SECRET_FIELDS = frozenset({"csrf_token", "password", "approver_password"})
Rerender = Callable[[int, str, Sequence[Any]], HTMLResponse]
# A task's page: (request, db, ws, task, *, status, error, form) -> the page.
TaskPage = Callable[..., HTMLResponse]


@dataclass(frozen=True)
class Pager:
    """One page of a list: 1-based ``page``, the total when known, whether a next page exists, the filters kept."""

    page: int
    total: int | None
    has_next: bool
    params: tuple[tuple[str, str], ...] = ()

    @property
    def pages(self) -> int | None:
        """Number of pages, when the total is known."""
        return None if self.total is None else max(1, -(-self.total // PER_PAGE))

    def link(self, page: int) -> str:
        """The query string of another page with the same filters."""
        return "?" + urlencode([*self.params, ("page", str(page))])

    @staticmethod
    def number(text: str) -> int:
        """A ``page`` query value as a page number (anything unusable is page 1)."""
        return int(text) if text.isdigit() and 0 < int(text) < 10**6 else 1


def render(request: Request, ws: WebSession, name: str, context: Mapping[str, Any], *, status: int = 200,
           error: str = "", notice_text: str = "") -> HTMLResponse:
    """A department page in the officers' frame (navigation, the CSRF token for its forms)."""
    return render_page(request, name, {**base_context(ws), "error": error, "notice": notice_text, **context}, status)


def message(request: Request, ws: WebSession, exc: ApiError, back: str, back_words: str) -> HTMLResponse:
    """A refusal with nothing else to show (an unknown plan, task or venue) and a way back."""
    return render(request, ws, "dept_message.html", {"back": back, "back_words": back_words},
                  status=exc.status, error=exc.message)


def refused(db: Session, exc: ApiError, again: Rerender) -> HTMLResponse:
    """The page again (``again(status, error, problems)``) with the refusal on top; nothing half-done kept."""
    db.rollback()
    return again(exc.status, exc.message, list(getattr(exc, "problems", ())))


def done(url: str, code: str, anchor: str = "") -> RedirectResponse:
    """After a successful post: back to ``url`` with the notice ``code`` (303, so a reload does not post again)."""
    joiner = "&" if "?" in url else "?"
    return RedirectResponse(f"{url}{joiner}saved={code}" + (f"#{anchor}" if anchor else ""), status_code=303)


def notice(words: Mapping[str, str], code: str) -> str:
    """The fixed words of a notice code (empty for an unknown code)."""
    return words.get(code, "")


def today(db: Session) -> date:
    """Today in the device's zone (deadlines and round windows are calendar dates there)."""
    return now(db).date()


def posted(form: FormData) -> dict[str, str]:
    """The form's text fields, to fill the form again after a refusal (never the token or a password)."""
    return {key: value for key, value in form.items() if isinstance(value, str) and key not in SECRET_FIELDS}


def form_date(form: FormData, name: str, zh: str, en: str, *, default: date | None = None) -> date:
    """A YYYY-MM-DD field; empty gives ``default`` (422 when there is none or the text is not a date)."""
    text = form_text(form, name)
    if not text and default is not None:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(422, "bad_date", f"{zh}须为日期 YYYY-MM-DD / {en} must be a date YYYY-MM-DD") from None


def form_int(form: FormData, name: str, zh: str, en: str, *, required: bool = True) -> int | None:
    """A whole-number field (None when empty and not required; 422 when not a number)."""
    text = form_text(form, name)
    if not text and not required:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise ApiError(422, "bad_number", f"{zh}须为整数 / {en} must be a whole number")
    return int(text)


def form_choice(form: FormData, name: str, choices: Iterable[str], zh: str, en: str) -> str:
    """A field that must be one of ``choices`` (422 naming them otherwise)."""
    value, allowed = form_text(form, name), list(choices)
    if value not in allowed:
        raise ApiError(422, "bad_choice", f"请选择{zh} / choose the {en}: {', '.join(allowed)}")
    return value


def path_part(text: str) -> str:
    """``text`` for a URL path (a task number or badge may hold ``/``, ``?``, ``#`` or Chinese)."""
    return quote(text, safe="/")


def on_draw(request: Request, db: Session, ws: WebSession, form: FormData, task: str,
            step: Callable[[Draw, str], None], page: TaskPage, prefix: str, saved: str, anchor: str = "") -> Response:
    """Run ``step(draw, actor)`` on the draw of ``task``; then ``prefix/task`` with the notice ``saved``, or, when
    refused, the task's ``page`` again with the refusal and the form as it was posted."""
    try:
        draw = draws.get_draw(db, task)
        step(draw, officer_actor(ws.officer))
    except ApiError as exc:
        return refused(db, exc, lambda status, error, _problems: page(
            request, db, ws, task, status=status, error=error, form=posted(form)))
    return done(f"{prefix}/{path_part(draw.task_number)}", saved, anchor)
