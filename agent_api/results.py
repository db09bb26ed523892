"""Results of drawn venues: record, publish, change, and the deadlines they are due by.

Each active pick (:class:`~agent_api.dept_tables.DrawVenue`) of a drawn or
published draw gets one official result type (rules/result_types.yaml; the
provincial wordings are accepted through ``Ruleset.result_type``), the day
the check was completed, a remark and, where there is one, the probe report
of issue 3 (its venue must be the drawn venue). Results are due within 20
working days after the check (seed 001 三; rules/department/results.yaml),
counted by agent_api.workdays; a deadline in a year without a confirmed
holiday schedule is stored as an estimate.

Publishing puts each result into the venue's credit history and, for the
types of results.yaml ``blacklist_on``, on the blacklist (through
agent_api.registry.set_blacklist). A published result changes only along
``change_allowed`` (发现问题待后续处理 → 未发现问题, seed 001 (八)), with the
reason; a change to a type of ``clears`` lifts the blacklisting it caused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent_api import ApiError
from agent_api.audit import now, record
from agent_api.db import Report
from agent_api.dept_rules import DeptRules, dept_rules
from agent_api.dept_tables import CreditEvent, Draw, DrawVenue, Result, ResultChange, Venue
from agent_api.draws import get_draw
from agent_api.plans import clean_text
from agent_api.registry import TEXT_LIMIT, set_blacklist
from agent_api.workdays import WorkCalendar
from probe.rules import ResultType, RulesError

__all__ = ["DeadlineItem", "DEADLINE_STATUSES", "RESULT_DRAW_STATES", "resolve_result_type", "record_result",
           "publish_results", "change_result", "deadline_items", "results_for_draw", "find_pick"]

RESULT_DRAW_STATES = ("drawn", "published")
DEADLINE_STATUSES = {
    "overdue": "逾期 / overdue",
    "due_soon": "即将到期 / due soon",
    "open": "未到期 / open",
    "published": "已公示 / published",
}
_URGENCY = {status: rank for rank, status in enumerate(DEADLINE_STATUSES)}


@dataclass(frozen=True)
class DeadlineItem:
    """One drawn venue's result deadline on a given day.

    ``counted_from`` is the result's completion date, else the task's
    ``check_end`` (``from_check_end``) while no result is recorded;
    ``working_days_left`` is negative once the deadline has passed.
    """

    draw_venue_id: int
    task_number: str
    task_name: str
    plan_number: str
    credit_code: str
    venue_name: str
    result_id: int | None
    result_type: str | None
    counted_from: date
    from_check_end: bool
    deadline: date
    estimated: bool
    working_days_left: int
    status: str


def resolve_result_type(label: str, rules: DeptRules | None = None) -> ResultType:
    """The result type named by a code or any of its wordings; 422 listing the valid ones."""
    ruleset = (rules or dept_rules()).ruleset
    try:
        return ruleset.result_type(label)
    except RulesError:
        valid = "、".join(f"{rt.code}（{rt.zh}）" for rt in ruleset.result_types.values())
        raise ApiError(422, "unknown_result_type",
                       f"没有该检查结果类型 / no such result type: {label!r}; 可选 / valid: {valid}") from None


def _subject(pick: DrawVenue) -> str:
    return f"result:{pick.draw.task_number}/{pick.venue.credit_code}"


def _pick_for_result(db: Session, draw_venue_id: int) -> DrawVenue:
    pick = db.get(DrawVenue, draw_venue_id)
    if pick is None:
        raise ApiError(404, "unknown_pick", f"没有该抽中场所 / no such drawn venue: {draw_venue_id}")
    if not pick.active:
        raise ApiError(409, "pick_withdrawn", "该场所已经批准被替换，不再录入结果 / this pick was replaced "
                                              "with an approval; it takes no result")
    if pick.draw.state not in RESULT_DRAW_STATES:
        raise ApiError(409, "not_drawn", f"任务 {pick.draw.task_number} 尚未抽取 / the task is not drawn yet")
    return pick


def _linked_report(db: Session, report_id: str, venue: Venue) -> str:
    """The report id, once the report exists and is of the drawn venue; 422 otherwise."""
    report = db.scalar(select(Report).where(Report.report_id == report_id))
    if report is None:
        raise ApiError(422, "unknown_report", f"没有该报告 / no such report: {report_id}")
    if report.venue_id != venue.site_id:
        drawn = venue.site_id or "未登记场所编号 / no site id"
        raise ApiError(422, "report_venue_mismatch",
                       f"报告的场所 {report.venue_id}（{report.venue_name}）与抽中场所 {drawn}（{venue.name}）不符 / "
                       f"the report is of venue {report.venue_id}, not of the drawn venue {drawn}")
    return report.report_id


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def record_result(db: Session, draw_venue_id: int, result_type: str, completed_on: date, remark: str, actor: str,
                  *, report_id: str | None = None, rules: DeptRules | None = None) -> Result:
    """Record (or, until published, re-record) the result of one drawn venue; commits.

    404 unknown pick; 409 pick withdrawn, draw not drawn or result already
    published (change it with :func:`change_result`); 422 unknown result
    type, completion before the check started or after today, unknown report
    or a report of another venue. The deadline and its estimate flag are
    stored with it.
    """
    rules = rules or dept_rules()
    pick = _pick_for_result(db, draw_venue_id)
    rt = resolve_result_type(result_type, rules)
    today = now(db).date()
    if completed_on > today:
        raise ApiError(422, "completed_in_future", f"完成日期 {completed_on} 晚于今天 {today} / a check cannot be "
                                                   "completed in the future")
    if completed_on < pick.draw.check_start:
        raise ApiError(422, "before_check", f"完成日期 {completed_on} 早于检查开始日期 {pick.draw.check_start} / "
                                            "completed before the check started")
    remark = clean_text(remark, "备注 / remark", TEXT_LIMIT, required=False)
    linked = _linked_report(db, report_id, pick.venue) if report_id else None
    deadline = WorkCalendar.from_rules(rules).add_working_days(completed_on, rules.results.deadline.working_days)
    values = {"result_type": rt.code, "completed_on": completed_on, "remark": remark, "report_id": linked,
              "deadline": deadline.date, "deadline_estimated": deadline.estimated}
    at, result = now(db), pick.result
    if result is None:
        result = Result(draw_venue=pick, recorded_by=actor, recorded_at=at, **values)
        db.add(result)
        detail = {key: _plain(value) for key, value in values.items()}
    else:
        if result.published_at is not None:
            raise ApiError(409, "published", "结果已公示，只能按规定修改 / the result is published; change it "
                                             "with a reason instead")
        detail = {key: [_plain(getattr(result, key)), _plain(value)] for key, value in values.items()
                  if getattr(result, key) != value}
        if not detail:
            return result
        for key, value in values.items():
            setattr(result, key, value)
        result.recorded_by, result.recorded_at = actor, at
    record(db, actor, "result.record", _subject(pick), detail)
    db.commit()
    return result


def publish_results(db: Session, draw_id: int, actor: str, result_ids: list[int] | None = None, *,
                    rules: DeptRules | None = None) -> list[Result]:
    """Publish the draw's unpublished results (all, or those of ``result_ids``); commits.

    Each becomes a "result" line of its venue's credit history; a type of
    results.yaml ``blacklist_on`` puts a venue not yet on the blacklist on it.
    404 unknown draw; 409 draw not drawn or nothing to publish; 422 an id
    that is not an unpublished result of this draw.
    """
    rules = rules or dept_rules()
    draw = db.get(Draw, draw_id)
    if draw is None:
        raise ApiError(404, "unknown_draw", f"没有该抽查任务 / no such draw: {draw_id}")
    if draw.state not in RESULT_DRAW_STATES:
        raise ApiError(409, "not_drawn", f"任务 {draw.task_number} 尚未抽取 / the task is not drawn yet")
    pending = [p.result for p in draw.venues if p.active and p.result is not None and p.result.published_at is None]
    if result_ids is not None:
        stray = sorted(set(result_ids) - {r.id for r in pending})
        if stray:
            raise ApiError(422, "not_publishable", f"不是该任务未公示的结果 / not unpublished results of task "
                                                   f"{draw.task_number}: {', '.join(map(str, stray))}")
        pending = [r for r in pending if r.id in set(result_ids)]
    if not pending:
        raise ApiError(409, "nothing_to_publish", f"任务 {draw.task_number} 没有待公示的结果 / nothing to publish")
    at = now(db)
    for result in pending:
        pick, rt = result.draw_venue, rules.ruleset.result_types[result.result_type]
        result.published_at = at
        reason = f"抽查任务 {draw.task_number} 检查结果：{rt.zh}" + (f"；{result.remark}" if result.remark else "")
        db.add(CreditEvent(venue_id=pick.venue_id, kind="result", result_type=rt.code, task_number=draw.task_number,
                           reason=reason, event_on=result.completed_on, recorded_by=actor, recorded_at=at))
        record(db, actor, "result.publish", _subject(pick), {"result_type": rt.code,
                                                              "completed_on": result.completed_on.isoformat()})
    db.flush()
    for result in pending:
        venue = result.draw_venue.venue
        if result.result_type in rules.results.blacklist_on and not venue.blacklisted:
            set_blacklist(db, venue.credit_code, True, rules.results.blacklist_on[result.result_type], at.date(),
                          actor, task_number=draw.task_number, result_type=result.result_type, commit=False)
    db.commit()
    return pending


def _blacklisted_by(db: Session, result: Result) -> bool:
    """Whether the venue's current blacklisting was caused by this result's task."""
    venue = result.draw_venue.venue
    if not venue.blacklisted:
        return False
    last = db.scalar(select(CreditEvent).where(CreditEvent.venue_id == venue.id,
                                               CreditEvent.kind.in_(("blacklist_add", "blacklist_remove")))
                     .order_by(CreditEvent.id.desc()).limit(1))
    return (last is not None and last.kind == "blacklist_add"
            and last.task_number == result.draw_venue.draw.task_number)


def change_result(db: Session, result_id: int, to_type: str, reason: str, actor: str, *,
                  rules: DeptRules | None = None) -> Result:
    """Change a published result along results.yaml ``change_allowed``, with the reason; commits.

    Records a ResultChange, a "result_changed" credit event and an audit
    entry; a change to a type of ``clears`` takes the venue off the
    blacklist when this result put it there. 404 unknown result; 409 not
    published; 422 unknown type, a change not allowed, or no reason.
    """
    rules = rules or dept_rules()
    result = db.get(Result, result_id)
    if result is None:
        raise ApiError(404, "unknown_result", f"没有该结果 / no such result: {result_id}")
    if result.published_at is None:
        raise ApiError(409, "not_published", "结果未公示，请直接重新录入 / the result is not published; "
                                             "record it again instead")
    old = rules.ruleset.result_types[result.result_type]
    new = resolve_result_type(to_type, rules)
    allowed = rules.results.change_allowed.get(old.code, [])
    if new.code not in allowed:
        may = "、".join(rules.ruleset.result_types[c].zh for c in allowed) or "无 / none"
        raise ApiError(422, "change_not_allowed", f"“{old.zh}”不能改为“{new.zh}”（可改为：{may}）/ a published "
                                                  f"{old.code} result cannot become {new.code}")
    reason = clean_text(reason, "修改原因 / reason", TEXT_LIMIT)
    at, pick = now(db), result.draw_venue
    db.add(ResultChange(result=result, from_type=old.code, to_type=new.code, reason=reason, changed_by=actor,
                        changed_at=at))
    result.result_type = new.code
    db.add(CreditEvent(venue_id=pick.venue_id, kind="result_changed", result_type=new.code,
                       task_number=pick.draw.task_number, reason=f"{old.zh} → {new.zh}：{reason}",
                       event_on=at.date(), recorded_by=actor, recorded_at=at))
    record(db, actor, "result.change", _subject(pick), {"from": old.code, "to": new.code, "reason": reason})
    db.flush()
    if new.code in rules.results.clears and _blacklisted_by(db, result):
        set_blacklist(db, pick.venue.credit_code, False, reason, at.date(), actor,
                      task_number=pick.draw.task_number, result_type=new.code, commit=False)
    db.commit()
    return result


def deadline_items(db: Session, today: date, *, rules: DeptRules | None = None) -> list[DeadlineItem]:
    """Every active pick of drawn or published draws with its result deadline on ``today``, most urgent first.

    status: published; overdue (past the deadline, not published); due_soon
    (at most results.yaml ``due_soon_working_days`` left); open. A stored
    deadline that was an estimate is counted again, so a year added to the
    holiday table since then is taken into account.
    """
    rules = rules or dept_rules()
    cal, terms = WorkCalendar.from_rules(rules), rules.results.deadline
    picks = db.scalars(select(DrawVenue).join(Draw).where(DrawVenue.active.is_(True),
                                                          Draw.state.in_(RESULT_DRAW_STATES)))
    items: list[DeadlineItem] = []
    for pick in picks:
        result = pick.result
        start = result.completed_on if result is not None else pick.draw.check_end
        if result is not None and not result.deadline_estimated:
            deadline, estimated = result.deadline, False
        else:
            counted = cal.add_working_days(start, terms.working_days)
            deadline, estimated = counted.date, counted.estimated
        left = cal.working_days_between(today, deadline)
        if result is not None and result.published_at is not None:
            status = "published"
        elif today > deadline:
            status = "overdue"
        else:
            status = "due_soon" if left <= terms.due_soon_working_days else "open"
        items.append(DeadlineItem(
            draw_venue_id=pick.id, task_number=pick.draw.task_number, task_name=pick.draw.task_name,
            plan_number=pick.draw.plan.plan_number, credit_code=pick.venue.credit_code, venue_name=pick.venue.name,
            result_id=result.id if result else None, result_type=result.result_type if result else None,
            counted_from=start, from_check_end=result is None, deadline=deadline, estimated=estimated,
            working_days_left=left, status=status))
    items.sort(key=lambda i: (_URGENCY[i.status], i.deadline, i.task_number, i.credit_code))
    return items


def results_for_draw(db: Session, draw_id: int) -> list[Result]:
    """The results recorded for a draw's picks, in pick order."""
    return list(db.scalars(select(Result).join(DrawVenue).where(DrawVenue.draw_id == draw_id)
                           .order_by(DrawVenue.position)))


def find_pick(db: Session, task_number: str, credit_code: str) -> DrawVenue:
    """The active pick of the venue ``credit_code`` in task ``task_number``; 404 when there is none."""
    draw = get_draw(db, task_number)
    pick = db.scalar(select(DrawVenue).join(Venue).where(DrawVenue.draw_id == draw.id, Venue.credit_code == credit_code,
                                                         DrawVenue.active.is_(True)))
    if pick is None:
        raise ApiError(404, "not_drawn_venue", f"任务 {task_number} 未抽中该场所 / {credit_code} is not a drawn venue "
                                               f"of task {task_number}")
    return pick
