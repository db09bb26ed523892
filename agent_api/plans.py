"""Spot-check plans (年度抽查工作计划): create one from the rules' defaults, waive rounds, show what is due.

A plan of a jurisdiction and year says how many rounds are due per period
(seed 000: 6 a year, every two months; seed 004: 3 a month), the ratio per
round and of the blacklist, the inspectors per venue and the minimum pool.
Its numbers start from rules/department/plans.yaml and may be raised by the
officer, never lowered below the rules' ``minimums``. Rounds joined to a
joint or cross-department check, or suspended by an emergency closure, are
waived with the reason recorded (seed 000 二(三): 检查次数应相应扣减).

:func:`round_schedule` gives every round of the year its window and status,
so that missing and overdue rounds are shown, not discovered.
"""

from __future__ import annotations

import calendar as _months
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent_api import ApiError
from agent_api.audit import now, record
from agent_api.dept_rules import DEFAULT_JURISDICTION, DeptRules, dept_rules, parse_ratio
from agent_api.dept_tables import PERIODS, REDUCTION_KINDS, Plan, PlanReduction
from agent_api.registry import TEXT_LIMIT

__all__ = ["RoundStatus", "PlanSummary", "ROUND_STATUSES", "REDUCTION_WORDS", "create_plan", "reduce_round",
           "round_schedule", "plan_summary", "list_plans", "get_plan", "total_rounds", "clean_text"]

# Every status a round can have, with its words (zh / en) for lists and the CLI.
ROUND_STATUSES = {
    "waived": "已核减 / waived",
    "published": "已公示 / published",
    "drawn": "已抽取 / drawn",
    "prepared": "已准备 / prepared",
    "overdue": "逾期未抽取 / overdue (prepared, not drawn)",
    "missing": "缺失 / missing",
    "due": "应抽取 / due",
    "upcoming": "未到期 / upcoming",
}
REDUCTION_WORDS = {
    "joint": "参与联合抽查 / joint check",
    "cross_department": "跨部门联合抽查 / cross-department check",
    "suspended": "突发事件停业 / suspended by an emergency",
}
_YEARS = (2000, 2100)
_MAX_COUNT = 10_000  # inspectors per venue, pool: far above any real plan, well inside an INTEGER
# Line and paragraph separators split lines too (str.splitlines): refused with the Cc characters.
_LINE_BREAKS = {"\u2028", "\u2029"}


@dataclass(frozen=True)
class RoundStatus:
    """One round of a plan's year: its window, status and, when there is one, its draw or waiver."""

    round_no: int
    start: date
    due: date
    status: str
    task_number: str | None = None
    reduction_kind: str | None = None
    reduction_reason: str | None = None


@dataclass(frozen=True)
class PlanSummary:
    """Counts for a plan's overview: rounds in all, past their due date, done, and by status."""

    plan_number: str
    total: int
    due_so_far: int
    done: int
    waived: int
    missing: int
    overdue: int
    counts: dict[str, int] = field(default_factory=dict)


def clean_text(value: str | None, what: str, limit: int, *, required: bool = True) -> str:
    """``value`` stripped; 422 when required and empty, too long, or holding control characters.

    Control characters are refused because these texts go into exports and
    tab-separated snapshot lines.
    """
    text = (value or "").strip()
    if required and not text:
        raise ApiError(422, "missing_field", f"{what}不能为空 / {what} is required")
    if len(text) > limit:
        raise ApiError(422, "too_long", f"{what}超过 {limit} 个字符 / {what} is longer than {limit} characters")
    if any(unicodedata.category(ch) == "Cc" or ch in _LINE_BREAKS for ch in text):
        raise ApiError(422, "control_characters", f"{what}含控制字符 / {what} contains control characters")
    return text


def total_rounds(plan: Plan) -> int:
    """Rounds in the plan's year: ``rounds`` for a yearly plan, twelve times that for a monthly one."""
    return plan.rounds * (12 if plan.period == "month" else 1)


def create_plan(db: Session, jurisdiction: str, year: int, actor: str, *, plan_number: str | None = None,
                name: str | None = None, authority: str | None = None, period: str | None = None,
                rounds: int | None = None, ratio: str | None = None, blacklist_ratio: str | None = None,
                inspectors_per_venue: int | None = None, min_pool: int | None = None,
                rules: DeptRules | None = None) -> Plan:
    """Create the plan of ``jurisdiction`` for ``year`` from the rules' defaults and the values given; commits.

    422 for a value below the rules' minimums (with the reason) or malformed;
    409 when the jurisdiction has a plan for that year or the plan number is taken.
    """
    rules = rules or dept_rules()
    jurisdiction = clean_text(jurisdiction, "辖区 / jurisdiction", 59)
    if jurisdiction == DEFAULT_JURISDICTION:
        raise ApiError(422, "bad_jurisdiction", "“default”不是辖区 / 'default' is not a jurisdiction")
    if not _YEARS[0] <= year <= _YEARS[1]:
        raise ApiError(422, "bad_year", f"年度须在 {_YEARS[0]}–{_YEARS[1]} / year must be {_YEARS[0]}-{_YEARS[1]}")
    base = rules.plan_defaults(jurisdiction)
    place = base.name if jurisdiction in rules.jurisdictions else jurisdiction
    values = {
        "plan_number": clean_text(plan_number or f"{jurisdiction}-{year}", "计划编号 / plan number", 64),
        "name": clean_text(name or f"{place}{year}年度“双随机、一公开”抽查工作计划", "计划名称 / plan name", 200),
        "authority": clean_text(authority if authority is not None else base.authority,
                                "检查实施机关 / authority", 200),
        "period": period or base.rounds.per,
        "rounds": base.rounds.count if rounds is None else rounds,
        "ratio": (ratio if ratio is not None else base.ratio).strip(),
        "blacklist_ratio": (blacklist_ratio if blacklist_ratio is not None else base.blacklist_ratio).strip(),
        "inspectors_per_venue": base.inspectors_per_venue if inspectors_per_venue is None else inspectors_per_venue,
        "min_pool": base.min_pool if min_pool is None else min_pool,
    }
    _check_values(values, rules)
    if db.scalar(select(Plan.id).where(Plan.jurisdiction == jurisdiction, Plan.year == year)) is not None:
        raise ApiError(409, "plan_exists", f"{jurisdiction} 已有 {year} 年度计划 / {jurisdiction} has a plan for {year}")
    if db.scalar(select(Plan.id).where(Plan.plan_number == values["plan_number"])) is not None:
        raise ApiError(409, "plan_exists", f"计划编号已存在 / plan number exists: {values['plan_number']}")
    plan = Plan(jurisdiction=jurisdiction, year=year, created_by=actor, created_at=now(db), **values)
    db.add(plan)
    try:
        db.flush()
    except IntegrityError:  # a concurrent create won the race between the checks and the insert
        db.rollback()
        raise ApiError(409, "plan_exists", f"计划已存在 / plan exists: {values['plan_number']}") from None
    record(db, actor, "plan.create", f"plan:{plan.plan_number}",
           {"jurisdiction": jurisdiction, "year": year, **values})
    db.commit()
    return plan


def _check_values(values: dict, rules: DeptRules) -> None:
    """422 naming the first value that is malformed or below the rules' minimums."""
    floor = rules.minimums
    if values["period"] not in PERIODS:
        raise ApiError(422, "bad_period", f"周期须为 year 或 month / period must be one of {', '.join(PERIODS)}")
    limit = 31 if values["period"] == "month" else 366
    if not 1 <= values["rounds"] <= limit:
        raise ApiError(422, "bad_rounds", f"轮次须在 1–{limit} / rounds must be 1-{limit} per {values['period']}")
    for key, label in (("ratio", "抽查比例 / ratio"), ("blacklist_ratio", "黑名单抽查比例 / blacklist ratio")):
        if len(values[key]) > 16:
            raise ApiError(422, "bad_ratio", f"{label}: {values[key][:20]}… 过长 / too long")
        try:
            given = parse_ratio(values[key])
        except ValueError as exc:
            raise ApiError(422, "bad_ratio", f"{label} 须为 (0, 1] 内的小数 / {exc}") from None
        if given < parse_ratio(getattr(floor, key)):
            raise ApiError(422, "below_minimum", f"{label} {values[key]} 低于下限 {getattr(floor, key)} / "
                                                 f"is below the minimum {getattr(floor, key)} (plans.yaml minimums)")
    for key, label in (("inspectors_per_venue", "每家检查人员数 / inspectors per venue"),
                       ("min_pool", "检查人员库最少人数 / minimum pool")):
        if values[key] > _MAX_COUNT:
            raise ApiError(422, "bad_count", f"{label} {values[key]} 过大 / is too large")
        if values[key] < getattr(floor, key):
            raise ApiError(422, "below_minimum", f"{label} {values[key]} 低于下限 {getattr(floor, key)} / "
                                                 f"is below the minimum {getattr(floor, key)} (plans.yaml minimums)")
    if values["min_pool"] < values["inspectors_per_venue"]:
        raise ApiError(422, "pool_too_small", "检查人员库最少人数不能少于每家检查人员数 / the minimum pool cannot "
                                              "be smaller than the inspectors per venue")


def reduce_round(db: Session, plan_id: int, round_no: int, kind: str, reason: str, actor: str) -> PlanReduction:
    """Waive one round (joint / cross_department / suspended) with the reason; commits.

    404 unknown plan; 422 bad round, kind or empty reason; 409 when the
    round already has a draw or a reduction.
    """
    plan = db.get(Plan, plan_id)
    if plan is None:
        raise ApiError(404, "unknown_plan", f"没有该计划 / no such plan: {plan_id}")
    total = total_rounds(plan)
    if not 1 <= round_no <= total:
        raise ApiError(422, "bad_round", f"轮次须在 1–{total} / round must be 1-{total}")
    if kind not in REDUCTION_KINDS:
        raise ApiError(422, "bad_kind", f"核减类型须为 / kind must be one of {', '.join(REDUCTION_KINDS)}")
    reason = clean_text(reason, "核减原因 / reason", TEXT_LIMIT)
    if any(d.round_no == round_no for d in plan.draws):
        raise ApiError(409, "round_drawn", f"第 {round_no} 轮已有抽取任务 / round {round_no} already has a draw")
    if any(r.round_no == round_no for r in plan.reductions):
        raise ApiError(409, "round_reduced", f"第 {round_no} 轮已核减 / round {round_no} is already waived")
    reduction = PlanReduction(round_no=round_no, kind=kind, reason=reason, recorded_by=actor, recorded_at=now(db))
    plan.reductions.append(reduction)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        raise ApiError(409, "round_reduced", f"第 {round_no} 轮已核减 / round {round_no} is already waived") from None
    record(db, actor, "plan.reduce", f"plan:{plan.plan_number}", {"round_no": round_no, "kind": kind, "reason": reason})
    db.commit()
    return reduction


def _windows(year: int, total: int) -> list[tuple[date, date]]:
    """(start, due) of each round: round i is due at the end of month ceil(12·i/total).

    A round starts the day after the previous one is due; rounds due at the
    same month's end (3 a month) share that month as their window.
    """
    windows: list[tuple[date, date]] = []
    for i in range(1, total + 1):
        month = -(-12 * i // total)
        due = date(year, month, _months.monthrange(year, month)[1])
        if not windows:
            start = date(year, 1, 1)
        elif windows[-1][1] < due:
            start = windows[-1][1] + timedelta(days=1)
        else:
            start = windows[-1][0]
        windows.append((start, due))
    return windows


def round_schedule(plan: Plan, today: date) -> list[RoundStatus]:
    """Every round of the plan's year with its window and status on ``today`` (see ROUND_STATUSES).

    waived: a reduction; published / drawn / prepared: the round's draw;
    overdue: due date passed with the draw only prepared; missing: due date
    passed and no draw; due: today inside the window, nothing drawn; upcoming.
    """
    draws = {d.round_no: d for d in plan.draws}
    reductions = {r.round_no: r for r in plan.reductions}
    rows: list[RoundStatus] = []
    for round_no, (start, due) in enumerate(_windows(plan.year, total_rounds(plan)), start=1):
        draw, reduction = draws.get(round_no), reductions.get(round_no)
        if reduction is not None:
            rows.append(RoundStatus(round_no, start, due, "waived", reduction_kind=reduction.kind,
                                    reduction_reason=reduction.reason))
            continue
        if draw is not None:
            status = "overdue" if draw.state == "prepared" and today > due else draw.state
        elif today > due:
            status = "missing"
        else:
            status = "due" if today >= start else "upcoming"
        rows.append(RoundStatus(round_no, start, due, status, task_number=draw.task_number if draw else None))
    return rows


def plan_summary(plan: Plan, today: date) -> PlanSummary:
    """Counts of the plan's rounds on ``today``: due so far (due date passed), done, waived, missing, overdue."""
    schedule = round_schedule(plan, today)
    counts = {status: 0 for status in ROUND_STATUSES}
    for row in schedule:
        counts[row.status] += 1
    return PlanSummary(plan_number=plan.plan_number, total=len(schedule),
                       due_so_far=sum(row.due < today for row in schedule),
                       done=counts["drawn"] + counts["published"], waived=counts["waived"],
                       missing=counts["missing"], overdue=counts["overdue"], counts=counts)


def list_plans(db: Session, year: int | None = None) -> list[Plan]:
    """Every plan (of ``year`` when given), newest year first, then by plan number."""
    query = select(Plan).order_by(Plan.year.desc(), Plan.plan_number)
    if year is not None:
        query = query.where(Plan.year == year)
    return list(db.scalars(query))


def get_plan(db: Session, plan_number: str) -> Plan:
    """The plan numbered ``plan_number``; 404 when there is none."""
    plan = db.scalar(select(Plan).where(Plan.plan_number == plan_number))
    if plan is None:
        raise ApiError(404, "unknown_plan", f"没有该计划 / no such plan: {plan_number}")
    return plan
