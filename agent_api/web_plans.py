"""The plans' pages (/ui/plans): the list, a new plan from the rules' defaults, a plan's rounds and their waivers.

The numbers and their floors are agent_api.plans' business; the page shows
the defaults of every jurisdiction beside the form (no script fills them in)
and each round of the year with its status, so a missing or overdue round is
seen, not discovered.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from agent_api import ApiError, plans
from agent_api.audit import officer_actor
from agent_api.db import WebSession, get_db
from agent_api.dept_rules import DEFAULT_JURISDICTION, dept_rules
from agent_api.dept_tables import PERIODS
from agent_api.web import form_data, form_text, page_session, post_session
from agent_api.web_dept import done, form_int, message, notice, path_part, posted, refused, render, today

__all__ = ["router", "PERIOD_WORDS"]

router = APIRouter(prefix="/ui/plans", include_in_schema=False)

PERIOD_WORDS = {"year": ("每年", "a year"), "month": ("每月", "a month")}  # "每年 6 轮 / 6 a year"
_NOTICES = {"plan": "抽查计划已创建 / plan created", "reduce": "已核减该轮次 / round waived"}


def _list_page(request: Request, db: Session, ws: WebSession, *, status: int = 200, error: str = "",
               notice_text: str = "", form: dict[str, str] | None = None) -> HTMLResponse:
    rules, day = dept_rules(), today(db)
    rows = [(plan, plans.plan_summary(plan, day)) for plan in plans.list_plans(db)]
    jurisdictions = {code: j for code, j in rules.jurisdictions.items() if code != DEFAULT_JURISDICTION}
    context = {"section": "plans", "rows": rows, "jurisdictions": jurisdictions,
               "default": rules.jurisdictions[DEFAULT_JURISDICTION], "minimums": rules.minimums,
               "periods": PERIODS, "period_words": PERIOD_WORDS, "form": form or {"year": str(day.year)}}
    return render(request, ws, "dept_plans.html", context, status=status, error=error, notice_text=notice_text)


@router.get("", response_class=HTMLResponse)
def plan_list(request: Request, saved: str = "", ws: WebSession = Depends(page_session),
              db: Session = Depends(get_db)) -> Response:
    """Every plan with its rounds done, missing and overdue; the form of a new plan."""
    return _list_page(request, db, ws, notice_text=notice(_NOTICES, saved))


def _overrides(form: FormData) -> dict[str, Any]:
    """The values the officer typed over the defaults (empty fields keep the rules' value)."""
    texts = {key: form_text(form, key) or None for key in ("plan_number", "name", "authority", "ratio",
                                                            "blacklist_ratio")}
    period = form_text(form, "period")
    if period and period not in PERIODS:
        raise ApiError(422, "bad_period", f"周期须为 year 或 month / period must be one of {', '.join(PERIODS)}")
    counts = {key: form_int(form, key, zh, en, required=False) for key, zh, en in (
        ("rounds", "轮次", "rounds"), ("inspectors_per_venue", "每家检查人员数", "inspectors per venue"),
        ("min_pool", "检查人员库最少人数", "minimum pool"))}
    return {**texts, "period": period or None, **counts}


@router.post("", response_class=HTMLResponse)
def post_plan(request: Request, ws: WebSession = Depends(post_session), db: Session = Depends(get_db),
              form: FormData = Depends(form_data)) -> Response:
    """Create a plan: jurisdiction (a listed one, or another code typed in), year, and any overrides."""
    try:
        jurisdiction = form_text(form, "jurisdiction_other") or form_text(form, "jurisdiction")
        year = form_int(form, "year", "年度", "year")
        plan = plans.create_plan(db, jurisdiction, year, officer_actor(ws.officer), **_overrides(form))
    except ApiError as exc:
        return refused(db, exc, lambda status, error, _problems: _list_page(
            request, db, ws, status=status, error=error, form=posted(form)))
    return done(f"/ui/plans/{path_part(plan.plan_number)}", "plan")


def _plan_page(request: Request, db: Session, ws: WebSession, plan_number: str, *, status: int = 200,
               error: str = "", notice_text: str = "", form: dict[str, str] | None = None) -> HTMLResponse:
    try:
        plan = plans.get_plan(db, plan_number)
    except ApiError as exc:
        return message(request, ws, exc, "/ui/plans", "返回抽查计划 / back to the plans")
    day = today(db)
    schedule = plans.round_schedule(plan, day)
    context = {"section": "plans", "plan": plan, "schedule": schedule, "summary": plans.plan_summary(plan, day),
               "statuses": plans.ROUND_STATUSES, "reductions": plans.REDUCTION_WORDS,
               "period_words": PERIOD_WORDS, "today": day, "form": form or {},
               "open_rounds": [r.round_no for r in schedule if r.status in ("missing", "due", "upcoming")]}
    return render(request, ws, "dept_plan.html", context, status=status, error=error, notice_text=notice_text)


@router.get("/{plan_number:path}", response_class=HTMLResponse)
def plan_page(request: Request, plan_number: str, saved: str = "", ws: WebSession = Depends(page_session),
              db: Session = Depends(get_db)) -> Response:
    """One plan: its numbers, every round of the year with its status, and the form to waive a round."""
    return _plan_page(request, db, ws, plan_number, notice_text=notice(_NOTICES, saved))


@router.post("/{plan_number:path}/reduce", response_class=HTMLResponse)
def post_reduce(request: Request, plan_number: str, ws: WebSession = Depends(post_session),
                db: Session = Depends(get_db), form: FormData = Depends(form_data)) -> Response:
    """Waive one round (joint or cross-department check, emergency closure) with the reason."""
    try:
        plan = plans.get_plan(db, plan_number)
        round_no = form_int(form, "round_no", "轮次", "round")
        plans.reduce_round(db, plan.id, round_no, form_text(form, "kind"), form_text(form, "reason"),
                           officer_actor(ws.officer))
    except ApiError as exc:
        return refused(db, exc, lambda status, error, _problems: _plan_page(
            request, db, ws, plan_number, status=status, error=error, form=posted(form)))
    return done(f"/ui/plans/{path_part(plan_number)}", "reduce", "schedule")
