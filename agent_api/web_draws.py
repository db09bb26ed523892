"""The draw ceremony's pages (/ui/draws): prepare, the witnesses' digits, publish, and approved replacements.

Each step is one call of agent_api.draws, which records it in the audit log;
the page shows what the step made public: at *prepare* the announcement
(commitment, snapshot SHA-256, sizes) in large type, for the witnesses to
read before any digit exists; after the draw the picks with their tickets
and teams; after publication the link to the public page. A replacement
needs the approving officer's own username and password, typed on this
tablet (seed 000: 未经本级公安机关负责人批准不得调整更改).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from agent_api import ApiError, auth, draws, plans
from agent_api import draw_algorithm as algo
from agent_api.audit import officer_actor, record
from agent_api.db import WebSession, get_db
from agent_api.dept_tables import CHECK_TYPES, Draw, Inspector
from agent_api.dept_tables import CHECK_TYPE_WORDS
from agent_api.web import form_data, form_text, page_session, post_session
from agent_api.web_dept import (done, form_choice, form_date, form_int, message, notice, on_draw, path_part, posted,
                                refused, render)

__all__ = ["router", "STATE_WORDS", "KIND_WORDS", "WITNESS_ROWS", "Member", "PickRow", "pick_rows",
           "public_replacements"]

PREFIX = "/ui/draws"
router = APIRouter(prefix=PREFIX, include_in_schema=False)

STATE_WORDS = {"prepared": "已准备，承诺已公布 / prepared, commitment published", "drawn": "已抽取 / drawn",
               "published": "已公布 / published"}
KIND_WORDS = {"regular": "常规 / regular", "blacklist": "黑名单 / blacklist"}
WITNESS_ROWS = 4  # rows of the witnesses' form: no script adds rows, empty ones are ignored
_NOTICES = {
    "prepared": "已准备：快照与承诺值已固定并公布 / prepared: the snapshot and the commitment are fixed and public",
    "drawn": "抽取完成 / drawn",
    "published": "已公布：密钥已揭示，任何人可复核 / published: the secret is revealed, anyone can verify",
    "replaced": "已按批准替换，替补为同一票号流的下一位 / replaced with the approval: the next ticket of the same stream",
}


@dataclass(frozen=True)
class Member:
    """One inspector of a team: badge and unit (public) and, on the officers' pages only, the name."""

    badge: str
    unit: str
    name: str | None


@dataclass(frozen=True)
class PickRow:
    """A drawn venue as the pages show it (the venue's name as frozen in the snapshot)."""

    draw_venue_id: int
    credit_code: str
    venue_name: str
    kind: str
    position: int
    ticket: str
    active: bool
    team: list[Member]


def _snapshot_names(draw: Draw) -> tuple[dict[str, str], dict[str, str]]:
    """Venue names by credit code and units by badge, as the draw's snapshot froze them."""
    venues, units = {}, {}
    for line in draws.draw_lines(draw):
        parts = line.split("\t")
        if parts[0] == "V":
            venues[parts[1]] = parts[3]
        elif parts[0] == "I":
            units[parts[1]] = parts[2]
    return venues, units


def pick_rows(db: Session, draw: Draw, *, with_names: bool) -> list[PickRow]:
    """The draw's picks in the order they were made (replacements last); names of inspectors only if asked."""
    venues, units = _snapshot_names(draw)
    picks = sorted(draw.venues, key=lambda p: p.id)
    names: dict[str, str] = {}
    if with_names:
        badges = sorted({b for p in picks for b in draws.team(p)})
        names = dict(db.execute(select(Inspector.badge, Inspector.name).where(Inspector.badge.in_(badges))).all())
    return [PickRow(p.id, p.venue.credit_code, venues.get(p.venue.credit_code, p.venue.name), p.kind, p.position,
                    p.ticket, p.active, [Member(b, units.get(b, ""), names.get(b) if with_names else None)
                                         for b in draws.team(p)]) for p in picks]


def public_replacements(draw: Draw) -> list[dict[str, Any]]:
    """The approved replacements as the bundle publishes them: the approver by badge number only."""
    return [{**entry, "approved_by": {"badge": entry["approved_by"]["badge"]}} for entry in json.loads(draw.replacements)]


# ---------------------------------------------------------------------------------------------------- list

def _list_page(request: Request, db: Session, ws: WebSession, *, status: int = 200, error: str = "",
               notice_text: str = "", form: dict[str, str] | None = None) -> HTMLResponse:
    context = {"section": "draws", "draws": list(reversed(draws.list_draws(db))), "plans": plans.list_plans(db),
               "states": STATE_WORDS, "check_types": CHECK_TYPE_WORDS, "form": form or {}}
    return render(request, ws, "dept_draws.html", context, status=status, error=error, notice_text=notice_text)


@router.get("", response_class=HTMLResponse)
def draw_list(request: Request, plan: str = "", round_no: str = Query("", alias="round"),
              ws: WebSession = Depends(page_session), db: Session = Depends(get_db)) -> Response:
    """Every draw, newest first, and the form to prepare one (plan and round may come from the plan's page)."""
    return _list_page(request, db, ws, form={"plan": plan, "round_no": round_no})


@router.post("", response_class=HTMLResponse)
def post_prepare(request: Request, ws: WebSession = Depends(post_session), db: Session = Depends(get_db),
                 form: FormData = Depends(form_data)) -> Response:
    """Step 1: freeze the snapshot and commit to the secret; the announcement is public from now on."""
    try:
        plan = plans.get_plan(db, form_text(form, "plan"))
        draw = draws.prepare_draw(
            db, plan.id, form_int(form, "round_no", "轮次", "round"), form_text(form, "task_number"),
            form_text(form, "task_name"), form_date(form, "check_start", "检查开始日期", "check start"),
            form_date(form, "check_end", "检查结束日期", "check end"), officer_actor(ws.officer),
            beacon_name=form_text(form, "beacon_name") or None,
            check_type=form_choice(form, "check_type", CHECK_TYPES, "抽查类型", "check type"))
    except ApiError as exc:
        return refused(db, exc, lambda status, error, _problems: _list_page(
            request, db, ws, status=status, error=error, form=posted(form)))
    return done(f"/ui/draws/{path_part(draw.task_number)}", "prepared")


# ---------------------------------------------------------------------------------------------- ceremony

def _targets(rows: list[PickRow]) -> list[tuple[str, str]]:
    """What a replacement can change: an active pick, or one member of its team (value, words)."""
    out = []
    for row in (r for r in rows if r.active):
        out.append((f"venue|{row.credit_code}", f"场所 / venue: {row.venue_name}（{row.credit_code}）"))
        out.extend((f"inspector|{row.credit_code}|{m.badge}",
                    f"检查人员 / inspector: {m.name or ''}（{m.badge}）@ {row.venue_name}") for m in row.team)
    return out


def _draw_page(request: Request, db: Session, ws: WebSession, task: str, *, status: int = 200, error: str = "",
               notice_text: str = "", form: dict[str, str] | None = None) -> HTMLResponse:
    try:
        draw = draws.get_draw(db, task)
    except ApiError as exc:
        return message(request, ws, exc, "/ui/draws", "返回抽取列表 / back to the draws")
    rows = pick_rows(db, draw, with_names=True) if draw.state != "prepared" else []
    context = {"section": "draws", "draw": draw, "ann": draws.announcement(draw), "rows": rows,
               "witnesses": draws.witness_inputs(draw), "replacements": json.loads(draw.replacements),
               "targets": _targets(rows), "states": STATE_WORDS, "kinds": KIND_WORDS,
               "check_types": CHECK_TYPE_WORDS, "witness_rows": WITNESS_ROWS, "min_digits": algo.MIN_DIGITS,
               "form": form or {}, "public_url": f"/public/draws/{path_part(draw.task_number)}"}
    return render(request, ws, "dept_draw.html", context, status=status, error=error, notice_text=notice_text)


@router.get("/{task:path}", response_class=HTMLResponse)
def draw_page(request: Request, task: str, saved: str = "", ws: WebSession = Depends(page_session),
              db: Session = Depends(get_db)) -> Response:
    """One draw's ceremony, by its state: announcement and witnesses' form; picks; publication."""
    return _draw_page(request, db, ws, task, notice_text=notice(_NOTICES, saved))


def _witnesses(form: FormData) -> list[tuple[str, str]]:
    """The witnesses' (name, digits) in the order of the form's rows; rows left empty are skipped."""
    rows = ((form_text(form, f"witness_name_{n}"), form_text(form, f"witness_digits_{n}"))
            for n in range(1, WITNESS_ROWS + 1))
    return [(name, digits) for name, digits in rows if name or digits]


@router.post("/{task:path}/enter", response_class=HTMLResponse)
def post_enter(request: Request, task: str, ws: WebSession = Depends(post_session), db: Session = Depends(get_db),
               form: FormData = Depends(form_data)) -> Response:
    """Step 2: the witnesses' names and dice digits (and the beacon value when one was named) give the picks."""
    def step(draw: Draw, actor: str) -> None:
        draws.enter_draw(db, draw.id, _witnesses(form), form_text(form, "beacon_value") or None, actor)
    return on_draw(request, db, ws, form, task, step, _draw_page, PREFIX, "drawn", "picks")


@router.post("/{task:path}/publish", response_class=HTMLResponse)
def post_publish(request: Request, task: str, ws: WebSession = Depends(post_session), db: Session = Depends(get_db),
                 form: FormData = Depends(form_data)) -> Response:
    """Step 3: reveal the secret; the bundle becomes public."""
    def step(draw: Draw, actor: str) -> None:
        draws.publish_draw(db, draw.id, actor)
    return on_draw(request, db, ws, form, task, step, _draw_page, PREFIX, "published")


@router.post("/{task:path}/replace", response_class=HTMLResponse)
def post_replace(request: Request, task: str, ws: WebSession = Depends(post_session), db: Session = Depends(get_db),
                 form: FormData = Depends(form_data)) -> Response:
    """Replace a pick or one inspector of its team, approved by the officer whose credentials are entered."""
    def step(draw: Draw, actor: str) -> None:
        kind, _, rest = form_text(form, "target").partition("|")
        code, _, badge = rest.partition("|")
        if kind not in ("venue", "inspector") or not code or (kind == "inspector") != bool(badge):
            raise ApiError(422, "bad_target", "请选择要替换的场所或检查人员 / choose the venue or inspector to replace")
        username, password = form_text(form, "approver_username"), form.get("approver_password")
        approver = auth.authenticate(db, username, password) if username and isinstance(password, str) else None
        if approver is None:
            record(db, actor, "draw.replace.fail", draw.task_number, {"username": username[:64]})
            db.commit()
            raise ApiError(400, "bad_approver", "批准人用户名或密码错误 / wrong username or password of the "
                                                "approving officer")
        draws.replace_pick(db, draw.id, venue_code=code, inspector_badge=badge or None, approver=approver,
                           reason=form_text(form, "reason"), actor=actor)
    return on_draw(request, db, ws, form, task, step, _draw_page, PREFIX, "replaced", "picks")
