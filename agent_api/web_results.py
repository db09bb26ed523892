"""The results' pages (/ui/results): deadlines first, then per draw the result of each drawn venue.

Results are due 20 working days after the check (agent_api.results counts
them under the statutory calendar); the list puts overdue items first and
says plainly when a deadline is only an estimate because the year's holiday
schedule is not confirmed. A result may link the probe report (case file) of
its venue: the report whose venue id is the venue's site id is offered first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from agent_api import ApiError, draws, results
from agent_api.db import Report, WebSession, get_db
from agent_api.dept_rules import dept_rules
from agent_api.dept_tables import Draw, DrawVenue, Result
from agent_api.web import form_data, form_text, page_session, post_session
from agent_api.web_dept import form_date, form_int, message, notice, on_draw, render, today
from agent_api.web_draws import KIND_WORDS, STATE_WORDS

__all__ = ["router", "ReportOption", "ResultRow", "stored_reports"]

PREFIX = "/ui/results"
router = APIRouter(prefix=PREFIX, include_in_schema=False)

MAX_REPORTS = 300  # newest stored reports offered for linking
ESTIMATE_WORDS = "估算 / estimate (no confirmed holiday schedule)"
_NOTICES = {"record": "结果已保存 / result saved", "publish": "结果已公示 / results published",
            "change": "结果已修改，原因已记录 / result changed, reason recorded"}


@dataclass(frozen=True)
class ReportOption:
    """A stored probe report that a result may link to."""

    report_id: str
    venue_id: str
    venue_name: str
    started_at: Any


@dataclass(frozen=True)
class ResultRow:
    """One active pick of a draw with its result, deadline, the report preselected and the changes allowed."""

    pick: DrawVenue
    result: Result | None
    deadline: results.DeadlineItem | None
    report_id: str | None
    reports: list[ReportOption]
    change_to: list[Any]


def stored_reports(db: Session) -> list[ReportOption]:
    """The newest stored reports (id, venue, start), for the link select."""
    rows = db.execute(select(Report.report_id, Report.venue_id, Report.venue_name, Report.started_at)
                      .order_by(Report.received_at.desc(), Report.id.desc()).limit(MAX_REPORTS)).all()
    return [ReportOption(*row) for row in rows]


# ---------------------------------------------------------------------------------------------- deadlines

@router.get("", response_class=HTMLResponse)
def deadlines(request: Request, ws: WebSession = Depends(page_session), db: Session = Depends(get_db)) -> Response:
    """Every drawn venue's result deadline, overdue first, then due soon; and the draws that take results."""
    day = today(db)
    task_draws = [d for d in reversed(draws.list_draws(db)) if d.state in results.RESULT_DRAW_STATES]
    context = {"section": "results", "items": results.deadline_items(db, day), "today": day,
               "statuses": results.DEADLINE_STATUSES, "estimate": ESTIMATE_WORDS, "draws": task_draws,
               "states": STATE_WORDS}
    return render(request, ws, "dept_results.html", context)


# ------------------------------------------------------------------------------------------ one draw's results

def _rows(db: Session, draw: Draw) -> list[ResultRow]:
    rules, reports = dept_rules(), stored_reports(db)
    items = {i.draw_venue_id: i for i in results.deadline_items(db, today(db), rules=rules)
             if i.task_number == draw.task_number}
    rows = []
    for pick in sorted((p for p in draw.venues if p.active), key=lambda p: p.id):
        result, site = pick.result, pick.venue.site_id
        mine = [r for r in reports if site is not None and r.venue_id == site]
        chosen = result.report_id if result and result.report_id else (mine[0].report_id if mine else None)
        change_to = []
        if result is not None and result.published_at is not None:
            change_to = [rules.ruleset.result_types[c] for c in rules.results.change_allowed.get(result.result_type, [])]
        rows.append(ResultRow(pick, result, items.get(pick.id), chosen,
                              mine + [r for r in reports if r not in mine], change_to))
    return rows


def _draw_page(request: Request, db: Session, ws: WebSession, task: str, *, status: int = 200, error: str = "",
               notice_text: str = "", form: dict[str, str] | None = None) -> HTMLResponse:
    try:
        draw = draws.get_draw(db, task)
    except ApiError as exc:
        return message(request, ws, exc, "/ui/results", "返回检查结果 / back to the results")
    rows = _rows(db, draw) if draw.state in results.RESULT_DRAW_STATES else []
    pending = sum(1 for r in rows if r.result is not None and r.result.published_at is None)
    context = {"section": "results", "draw": draw, "rows": rows, "pending": pending, "states": STATE_WORDS,
               "kinds": KIND_WORDS, "result_types": list(dept_rules().ruleset.result_types.values()),
               "statuses": results.DEADLINE_STATUSES, "estimate": ESTIMATE_WORDS, "form": form or {}}
    return render(request, ws, "dept_result.html", context, status=status, error=error, notice_text=notice_text)


@router.get("/{task:path}", response_class=HTMLResponse)
def draw_results(request: Request, task: str, saved: str = "", ws: WebSession = Depends(page_session),
                 db: Session = Depends(get_db)) -> Response:
    """The results of one draw: a form per drawn venue, the publish button, the change form of published ones."""
    return _draw_page(request, db, ws, task, notice_text=notice(_NOTICES, saved))


def _mine(db: Session, draw: Draw, model: type, ident: int | None) -> Any:
    """The pick or result ``ident`` when it belongs to ``draw`` (404 otherwise: a form of another task)."""
    row = db.get(model, ident) if ident is not None else None
    pick = row if isinstance(row, DrawVenue) else getattr(row, "draw_venue", None)
    if pick is None or pick.draw_id != draw.id:
        raise ApiError(404, "not_in_task", f"任务 {draw.task_number} 中没有该项 / not an item of task "
                                           f"{draw.task_number}: {ident}")
    return row


@router.post("/{task:path}/record", response_class=HTMLResponse)
def post_record(request: Request, task: str, ws: WebSession = Depends(post_session), db: Session = Depends(get_db),
                form: FormData = Depends(form_data)) -> Response:
    """Record (or, until published, re-record) one drawn venue's result."""
    def step(draw: Draw, actor: str) -> None:
        pick = _mine(db, draw, DrawVenue, form_int(form, "draw_venue_id", "场所", "drawn venue"))
        code = form_text(form, "result_type")
        if not code:
            raise ApiError(422, "no_result_type", "请选择检查结果类型 / choose a result type")
        results.record_result(db, pick.id, code, form_date(form, "completed_on", "完成日期", "completion date"),
                              form_text(form, "remark"), actor, report_id=form_text(form, "report_id") or None)
    return on_draw(request, db, ws, form, task, step, _draw_page, PREFIX, "record")


@router.post("/{task:path}/publish", response_class=HTMLResponse)
def post_publish(request: Request, task: str, ws: WebSession = Depends(post_session), db: Session = Depends(get_db),
                 form: FormData = Depends(form_data)) -> Response:
    """Publish every recorded, unpublished result of the draw (credit history, blacklist where the rules say)."""
    def step(draw: Draw, actor: str) -> None:
        results.publish_results(db, draw.id, actor)
    return on_draw(request, db, ws, form, task, step, _draw_page, PREFIX, "publish")


@router.post("/{task:path}/change", response_class=HTMLResponse)
def post_change(request: Request, task: str, ws: WebSession = Depends(post_session), db: Session = Depends(get_db),
                form: FormData = Depends(form_data)) -> Response:
    """Change a published result where the rules allow (发现问题待后续处理 → 未发现问题), with the reason."""
    def step(draw: Draw, actor: str) -> None:
        result = _mine(db, draw, Result, form_int(form, "result_id", "结果", "result"))
        results.change_result(db, result.id, form_text(form, "to_type"), form_text(form, "reason"), actor)
    return on_draw(request, db, ws, form, task, step, _draw_page, PREFIX, "change")
