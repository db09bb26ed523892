"""The public pages (/public): draws as announced and drawn, published bundles, the verifier, published results.

No login, GET only, read-only. What they show is the limit of what is
public: a draw's announcement from the moment it is prepared (the commitment
must be public before any witness input exists); once drawn, the witnesses'
inputs, beacon value and seed; once published (the department publishes when
the checks no longer need surprise), the picks, with inspectors by badge
number and unit only (no name, sex or post: the snapshot holds no more) and
approvals by the approver's badge, the secret and the bundle, with the
standalone verifier (agent_api/draw_algorithm.py, standard library only) to
re-derive every pick. Results: only published ones, with the credit
publicity system's fields (agent_api.disclosure). Same strict headers as the
officers' pages; no script.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from agent_api import ApiError, draws
from agent_api import draw_algorithm as algo
from agent_api.db import get_db
from agent_api.dept_tables import CHECK_TYPE_WORDS, Draw
from agent_api.disclosure import EXPORT_FORMATS, disclosure_rows, export_disclosure
from agent_api.web import SECURITY_HEADERS, templates
from agent_api.web_dept import path_part
from agent_api.web_draws import KIND_WORDS, STATE_WORDS, pick_rows, public_replacements

__all__ = ["router", "VERIFIER_NAME", "verify_command", "bundle_filename"]

router = APIRouter(prefix="/public", include_in_schema=False)

VERIFIER_NAME = "verify_draw.py"
VERIFIER_PATH = Path(algo.__file__)
# Public pages may be cached, but must be revalidated: a draw moves on, results get published.
_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
_MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json",
          "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def bundle_filename(task_number: str) -> str:
    """The download name of a task's bundle: ASCII only, safe in a header and on any file system."""
    return f"bundle-{_UNSAFE.sub('_', task_number).strip('_') or 'task'}.json"


def verify_command(task_number: str) -> str:
    """The one line that checks a downloaded bundle with the downloaded verifier."""
    return f"python3 {VERIFIER_NAME} {bundle_filename(task_number)}"


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"error": "", "notice": "", **context}, status_code=status,
                                      headers=_HEADERS)


def _missing(request: Request, exc: ApiError) -> HTMLResponse:
    return _page(request, "public_message.html", {"error": exc.message}, exc.status)


def _download(data: bytes, media_type: str, filename: str) -> Response:
    return Response(data, media_type=media_type, headers={
        **_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("", response_class=HTMLResponse)
def public_draws(request: Request, db: Session = Depends(get_db)) -> Response:
    """Every draw, newest first: announced (prepared), drawn, published."""
    rows = list(reversed(draws.list_draws(db)))
    return _page(request, "public_draws.html", {"draws": rows, "states": STATE_WORDS})


@router.get("/verify_draw.py")
def verifier() -> Response:
    """The standalone verifier: the service's own draw algorithm file, byte for byte."""
    return _download(VERIFIER_PATH.read_bytes(), "text/x-python; charset=utf-8", VERIFIER_NAME)


@router.get("/results", response_class=HTMLResponse)
def public_results(request: Request, db: Session = Depends(get_db)) -> Response:
    """Published results with the credit publicity system's fields; downloads as CSV, XLSX and JSON."""
    return _page(request, "public_results.html", {"rows": disclosure_rows(db), "formats": EXPORT_FORMATS})


@router.get("/results.{fmt}")
def public_results_file(request: Request, fmt: str, db: Session = Depends(get_db)) -> Response:
    """The disclosure as a file (published results only)."""
    if fmt not in EXPORT_FORMATS:
        return _missing(request, ApiError(404, "unknown_format", f"没有该格式 / no such format: {fmt}"))
    return _download(export_disclosure(db, fmt), _MEDIA[fmt], f"results.{fmt}")


@router.get("/draws/{task:path}/bundle.json")
def bundle(request: Request, task: str, db: Session = Depends(get_db)) -> Response:
    """The published bundle, the exact bytes stored at publication (404 before)."""
    try:
        draw = draws.get_draw(db, task)
        data = draws.bundle_bytes(draw)
    except ApiError as exc:
        return _missing(request, exc)
    return _download(data, "application/json", bundle_filename(draw.task_number))


def _draw_context(db: Session, draw: Draw) -> dict[str, Any]:
    drawn, published = draw.state != "prepared", draw.state == "published"
    # The picks stay internal until publication: a spot check is not announced to the venue in advance.
    return {"draw": draw, "ann": draws.announcement(draw), "states": STATE_WORDS, "kinds": KIND_WORDS,
            "check_types": CHECK_TYPE_WORDS, "witnesses": draws.witness_inputs(draw) if drawn else [],
            "rows": pick_rows(db, draw, with_names=False) if published else [],
            "replacements": public_replacements(draw) if published else [],
            "bundle_url": f"/public/draws/{path_part(draw.task_number)}/bundle.json",
            "bundle_name": bundle_filename(draw.task_number), "verifier_name": VERIFIER_NAME,
            "command": verify_command(draw.task_number)}


@router.get("/draws/{task:path}", response_class=HTMLResponse)
def public_draw(request: Request, task: str, db: Session = Depends(get_db)) -> Response:
    """One draw as far as it is public: the announcement; the inputs and picks; the secret and the bundle."""
    try:
        draw = draws.get_draw(db, task)
    except ApiError as exc:
        return _missing(request, exc)
    return _page(request, "public_draw.html", _draw_context(db, draw))
