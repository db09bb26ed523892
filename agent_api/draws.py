"""The draw service (双随机): prepare, enter the witnesses' dice, publish, replace a pick; and its readers.

The recipe is agent_api.draw_algorithm ("cafe-draw/1"); this module only
gathers its inputs from the registries, keeps the state in the ``draws`` and
``draw_venues`` tables and records every step in the audit log, in the same
transaction as the change:

* :func:`prepare_draw` freezes the snapshot of the plan's jurisdiction (open
  venues, qualified active officers, their conflicts), makes the 32-byte
  secret and stores its SHA-256 (the commitment) with the announcement, all
  before any witness input can exist;
* :func:`enter_draw` takes the witnesses' names and dice digits (and the
  beacon value when one was named), derives the seed and stores the picks;
* :func:`publish_draw` reveals the secret in the bundle anyone can verify;
* :func:`replace_pick` changes a pick only with a named approver and a reason,
  to exactly what the algorithm's next ticket gives.

Refusals are :class:`~agent_api.ApiError` ("中文 / English").
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent_api import ApiError
from agent_api import draw_algorithm as algo
from agent_api.audit import now, record
from agent_api.db import Officer
from agent_api.dept_tables import CHECK_TYPES, Conflict, Draw, DrawVenue, Inspector, Plan, PlanReduction, Venue
from agent_api.plans import clean_text, total_rounds

__all__ = ["MAX_BUNDLE_UPLOAD", "prepare_draw", "enter_draw", "publish_draw", "replace_pick",
           "get_draw", "list_draws", "announcement", "bundle_bytes", "verify_bundle_bytes", "draw_lines",
           "witness_inputs", "team"]

# A bundle of 100,000 venues is ~20 MB; anything much larger is not a bundle this service made.
MAX_BUNDLE_UPLOAD = 64 * 1024 * 1024
_LISTED = 20  # how many offending codes a refusal names before it only counts the rest
_IN_CHUNK = 500  # keys per IN (...) query, well under SQLite's bound-parameter limit
_TASK_NUMBER = ("任务编号", "task number")
_REASON_LIMIT = 1000


# --- lookups ------------------------------------------------------------------------------------------------------

def get_draw(db: Session, task_number: str) -> Draw:
    """The draw of this task number (404 if none)."""
    if algo.field_problem(*_TASK_NUMBER, task_number):  # e.g. a lone surrogate: no database can be asked it
        raise ApiError(404, "draw_not_found", f"没有该抽查任务 / no such task: {task_number!r}")
    draw = db.execute(select(Draw).where(Draw.task_number == task_number)).unique().scalar_one_or_none()
    if draw is None:
        raise ApiError(404, "draw_not_found", f"没有该抽查任务 / no such task: {task_number}")
    return draw


def list_draws(db: Session, plan_id: int | None = None) -> list[Draw]:
    """Every draw (of one plan if given), oldest first."""
    query = select(Draw).order_by(Draw.id)
    if plan_id is not None:
        query = query.where(Draw.plan_id == plan_id)
    return list(db.execute(query).unique().scalars())


def _locked_draw(db: Session, draw_id: int) -> Draw:
    """The draw row, locked for this transaction on PostgreSQL (two officers may press the button at once)."""
    query = select(Draw).where(Draw.id == draw_id).with_for_update(of=Draw)
    draw = db.execute(query).unique().scalar_one_or_none()
    if draw is None:
        raise ApiError(404, "draw_not_found", f"没有该抽查任务 / no such draw: {draw_id}")
    return draw


def announcement(draw: Draw) -> dict[str, Any]:
    """The announcement published at prepare time (section 3 of the algorithm); never holds the secret."""
    return json.loads(draw.announcement)


def draw_lines(draw: Draw) -> list[str]:
    """The frozen snapshot lines of a draw."""
    return draw.snapshot.split("\n")[:-1]


def bundle_bytes(draw: Draw) -> bytes:
    """The published bundle (404 until the draw is published: it reveals the secret)."""
    if draw.state != "published" or draw.bundle is None:
        raise ApiError(404, "bundle_not_published", f"任务 {draw.task_number} 尚未公布 / the draw of task "
                                                    f"{draw.task_number} is not published yet")
    return draw.bundle.encode("utf-8")


def verify_bundle_bytes(data: bytes) -> algo.Verification:
    """Verify uploaded bundle bytes (bounded size; garbage gives a failed verification, never an exception)."""
    if len(data) > MAX_BUNDLE_UPLOAD:
        return algo.Verification(False, [f"文件过大 / the file is larger than {MAX_BUNDLE_UPLOAD} bytes"])
    try:
        bundle = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return algo.Verification(False, [f"不是 UTF-8 JSON / not UTF-8 JSON: {exc}"])
    return algo.verify_bundle(bundle)


# --- prepare ------------------------------------------------------------------------------------------------------

def _listed(codes: Sequence[str]) -> str:
    shown = ", ".join(codes[:_LISTED])
    return shown + (f" …（另 {len(codes) - _LISTED} 个 / {len(codes) - _LISTED} more)" if len(codes) > _LISTED else "")


def _registry(db: Session, jurisdiction: str) -> tuple[list[Venue], list[Inspector], list[tuple[str, str]]]:
    """Who is in a draw of ``jurisdiction``: open venues, the pool, and the conflicts between them."""
    venue_filter = (Venue.jurisdiction == jurisdiction, Venue.status == "open")
    pool_filter = (Inspector.jurisdiction == jurisdiction, Inspector.kind == "officer",
                   Inspector.qualified.is_(True), Inspector.active.is_(True))
    venues = list(db.execute(select(Venue).where(*venue_filter).order_by(Venue.credit_code)).scalars())
    pool = list(db.execute(select(Inspector).where(*pool_filter).order_by(Inspector.badge)).scalars())
    conflicts = db.execute(select(Inspector.badge, Venue.credit_code).select_from(Conflict)
                           .join(Inspector, Conflict.inspector_id == Inspector.id)
                           .join(Venue, Conflict.venue_id == Venue.id)
                           .where(*venue_filter, *pool_filter)).all()
    return venues, pool, [(badge, code) for badge, code in conflicts]


def _pool_problems(plan: Plan, venues: list[Venue], pool: list[Inspector],
                   conflicts: list[tuple[str, str]]) -> list[str]:
    """Why this registry cannot be drawn under ``plan`` (empty: it can)."""
    problems = []
    if not venues:
        problems.append(f"辖区 {plan.jurisdiction} 没有营业中的场所 / no open venue in {plan.jurisdiction}")
    if len(pool) < plan.min_pool:
        problems.append(f"检查人员库仅 {len(pool)} 人，少于 {plan.min_pool} 人 / the inspector pool holds "
                        f"{len(pool)}, fewer than {plan.min_pool}")
    mismatched = [v.credit_code for v in venues if v.code_check == "mismatch"]
    if mismatched:
        problems.append(f"以下信用代码校验位不符，须经人工确认 / these credit codes fail the checksum and must be "
                        f"confirmed by a person first: {_listed(mismatched)}")
    blocked = Counter(code for _badge, code in conflicts)
    short = [v.credit_code for v in venues if len(pool) - blocked[v.credit_code] < plan.inspectors_per_venue]
    if short and len(pool) >= plan.inspectors_per_venue:
        problems.append(f"以下场所无回避的检查人员不足 {plan.inspectors_per_venue} 人 / fewer than "
                        f"{plan.inspectors_per_venue} inspectors without a conflict for: {_listed(short)}")
    return problems


def _task_problems(db: Session, plan: Plan, round_no: int, fields: dict[tuple[str, str], str | None],
                   check_start: date, check_end: date, check_type: str) -> list[str]:
    """What is wrong with the task's own fields (422); a taken task number or round is a 409 raised here."""
    problems = [p for (zh, en), value in fields.items() if value is not None
                for p in [algo.field_problem(zh, en, value)] if p]
    if problems:  # refused before the task number goes into a query
        raise ApiError(422, "draw_refused", "无法准备抽取 / cannot prepare the draw: " + "; ".join(problems))
    rounds = total_rounds(plan)
    if not 1 <= round_no <= rounds:
        problems.append(f"轮次须在 1 到 {rounds} 之间 / round must be 1..{rounds} for plan {plan.plan_number}")
    if check_end < check_start:
        problems.append("检查结束日期早于开始日期 / the check ends before it starts")
    if check_type not in CHECK_TYPES:
        problems.append(f"检查类型须为 / check_type must be one of {', '.join(CHECK_TYPES)}")
    for what, ratio in (("ratio", plan.ratio), ("blacklist_ratio", plan.blacklist_ratio)):
        try:
            algo.parse_ratio(ratio)
        except ValueError as exc:
            problems.append(f"计划 {plan.plan_number} {what}: {exc}")
    task_number = fields[_TASK_NUMBER]
    if db.execute(select(Draw.id).where(Draw.task_number == task_number)).first():
        raise ApiError(409, "task_taken", f"任务编号已被使用 / task number already used: {task_number}")
    if db.execute(select(Draw.id).where(Draw.plan_id == plan.id, Draw.round_no == round_no)).first():
        raise ApiError(409, "round_drawn", f"计划 {plan.plan_number} 第 {round_no} 轮已抽取 / round {round_no} of "
                                           f"plan {plan.plan_number} is already drawn")
    waived = db.execute(select(PlanReduction).where(PlanReduction.plan_id == plan.id,
                                                    PlanReduction.round_no == round_no)).scalar_one_or_none()
    if waived is not None:
        raise ApiError(409, "round_waived", f"第 {round_no} 轮已核减（{waived.reason}）/ round {round_no} was "
                                            f"waived: {waived.reason}")
    return problems


def prepare_draw(db: Session, plan_id: int, round_no: int, task_number: str, task_name: str, check_start: date,
                 check_end: date, actor: str, *, beacon_name: str | None = None, check_type: str = "undirected",
                 authority: str | None = None) -> Draw:
    """Step 1: freeze the snapshot, make and commit to the secret, publish the announcement (state "prepared")."""
    plan = db.get(Plan, plan_id)
    if plan is None:
        raise ApiError(404, "plan_not_found", f"没有该抽查计划 / no such plan: {plan_id}")
    task_number = clean_text(task_number, "任务编号 / task number", 64)
    task_name = clean_text(task_name, "任务名称 / task name", 200)
    authority = clean_text(plan.authority if authority is None else authority, "检查机关 / authority", 200,
                           required=False)
    beacon_name = clean_text(beacon_name, "信标名称 / beacon name", 500, required=False) or None
    # clean_text has refused control characters; this also refuses what cannot be UTF-8 (lone surrogates).
    fields = {_TASK_NUMBER: task_number, ("任务名称", "task name"): task_name,
              ("检查机关", "authority"): authority or None, ("信标名称", "beacon name"): beacon_name}
    problems = _task_problems(db, plan, round_no, fields, check_start, check_end, check_type)
    venues, pool, conflicts = _registry(db, plan.jurisdiction)
    problems += _pool_problems(plan, venues, pool, conflicts)
    lines: list[str] = []
    try:
        lines = algo.snapshot_lines([(v.credit_code, v.blacklisted, v.name) for v in venues],
                                    [(i.badge, i.unit) for i in pool], conflicts)
    except algo.SnapshotError as exc:
        problems += exc.problems
    if problems:
        raise ApiError(422, "draw_refused", "无法准备抽取 / cannot prepare the draw: " + "; ".join(problems))
    secret = secrets.token_bytes(32)
    commitment = hashlib.sha256(secret).hexdigest()
    at = now(db)
    public = algo.announce(lines, task_number=task_number, task_name=task_name, plan_number=plan.plan_number,
                           plan_name=plan.name, jurisdiction=plan.jurisdiction, authority=authority,
                           check_type=check_type, check_start=check_start.isoformat(),
                           check_end=check_end.isoformat(), prepared_at=at.isoformat(), ratio=plan.ratio,
                           blacklist_ratio=plan.blacklist_ratio, inspectors_per_venue=plan.inspectors_per_venue,
                           commitment=commitment, beacon_name=beacon_name)
    draw = Draw(plan_id=plan.id, round_no=round_no, task_number=task_number, task_name=task_name,
                check_type=check_type, authority=authority, check_start=check_start, check_end=check_end,
                state="prepared", algorithm=algo.ALGORITHM, snapshot="".join(line + "\n" for line in lines),
                snapshot_sha256=public["snapshot_sha256"], announcement=json.dumps(public, ensure_ascii=False),
                commitment=commitment, secret=secret.hex(), beacon_name=beacon_name, replacements="[]",
                prepared_by=actor, prepared_at=at)
    db.add(draw)
    try:
        db.flush()
        record(db, actor, "draw.prepare", task_number, {"round": round_no, "announcement": public})
        db.commit()
    except IntegrityError:
        db.rollback()
        raise ApiError(409, "task_taken", f"任务编号或轮次已被使用 / task number or round already taken: "
                                          f"{task_number}") from None
    return draw


# --- draw ---------------------------------------------------------------------------------------------------------

def witness_inputs(draw: Draw) -> list[tuple[str, str]]:
    """The witnesses' (name, digits) as entered, in order (empty before the draw)."""
    return [(w["name"], w["digits"]) for w in json.loads(draw.witnesses or "[]")]


def team(pick: DrawVenue) -> list[str]:
    """A pick's inspectors (badges, in dealing order)."""
    return list(json.loads(pick.inspectors))


def _outcome(draw: Draw, requests: Sequence[dict[str, Any]], witnesses: list[tuple[str, str]] | None = None,
             beacon_value: str | None = None) -> algo.Outcome:
    """The draw computed from what is stored (or the ``witnesses`` and ``beacon_value`` being entered), with
    ``requests`` applied (409 when one cannot be)."""
    if witnesses is None:
        witnesses, beacon_value = witness_inputs(draw), draw.beacon_value
    try:
        return algo.compute_draw(draw_lines(draw), announcement(draw), bytes.fromhex(draw.secret), witnesses,
                                 beacon_value, requests)
    except algo.DrawError as exc:
        raise ApiError(409, "draw_impossible", f"无法按此完成抽取 / the draw cannot be carried out: {exc}") from None


@contextmanager
def _one_change(db: Session) -> Iterator[None]:
    """The block's changes and audit entry are committed together, or, on any refusal, none of them."""
    try:
        yield
        db.commit()
    except BaseException:
        db.rollback()
        raise


def _venues_by_code(db: Session, codes: Sequence[str]) -> dict[str, Venue]:
    found: dict[str, Venue] = {}
    for start in range(0, len(codes), _IN_CHUNK):
        chunk = codes[start:start + _IN_CHUNK]
        found.update((v.credit_code, v) for v in db.execute(select(Venue).where(Venue.credit_code.in_(chunk)))
                     .unique().scalars())
    missing = [code for code in codes if code not in found]
    if missing:
        raise ApiError(409, "registry_changed", f"抽中的场所已不在名录库中 / drawn venues no longer in the "
                                                f"registry: {_listed(missing)}")
    return found


def _store_pick(draw: Draw, venue: Venue, pick: algo.Pick) -> None:
    # Through the relationship, so that the caller's draw.venues shows the new pick at once.
    draw.venues.append(DrawVenue(venue=venue, kind=pick.kind, position=pick.position, ticket=pick.ticket,
                                 inspectors=json.dumps(pick.inspectors, ensure_ascii=False), active=True))


def enter_draw(db: Session, draw_id: int, witnesses: list[tuple[str, str]], beacon_value: str | None,
               actor: str) -> Draw:
    """Step 2: the witnesses' names and dice digits (in entry order) and the beacon value give the picks."""
    with _one_change(db):
        draw = _locked_draw(db, draw_id)
        if draw.state != "prepared":
            raise ApiError(409, "draw_state", f"任务 {draw.task_number} 已抽取 / task {draw.task_number} is "
                                              f"already {draw.state}")
        entered = [(name.strip(), digits.strip()) for name, digits in witnesses]
        problems = algo.witness_problems(entered, draw.beacon_name, beacon_value)
        if problems:
            raise ApiError(422, "witness_input", "见证输入不符合要求 / witness input refused: " + "; ".join(problems))
        outcome = _outcome(draw, [], entered, beacon_value)
        venues = _venues_by_code(db, [pick.credit_code for pick in outcome.final])
        for pick in outcome.final:
            _store_pick(draw, venues[pick.credit_code], pick)
        draw.witnesses = json.dumps([{"name": n, "digits": d} for n, d in entered], ensure_ascii=False)
        draw.beacon_value, draw.seed, draw.state = beacon_value, outcome.seed, "drawn"
        draw.drawn_by, draw.drawn_at = actor, now(db)
        record(db, actor, "draw.enter", draw.task_number,
               {"witnesses": json.loads(draw.witnesses), "beacon_value": beacon_value, "seed": outcome.seed,
                "picks": outcome.picks})
    return draw


# --- publish ------------------------------------------------------------------------------------------------------

def _public_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A replacement as published: the approver by badge only (DESIGN: officers appear publicly by badge)."""
    return {**entry, "approved_by": {"badge": entry["approved_by"]["badge"]}}


def _build_bundle(draw: Draw) -> str:
    """The bundle JSON text of a drawn draw; refuses to store one that does not verify (a bug, never data)."""
    entries = [_public_entry(e) for e in json.loads(draw.replacements)]
    bundle = algo.make_bundle(announcement(draw), draw_lines(draw), bytes.fromhex(draw.secret), witness_inputs(draw),
                              draw.beacon_value, draw.drawn_at.isoformat(), entries, draw.published_at.isoformat())
    check = algo.verify_bundle(bundle)
    if not check.ok:
        raise ApiError(500, "bundle_inconsistent", "抽取包自检未通过 / the bundle failed its own verification: "
                       + "; ".join(check.problems[:5]))
    return algo.bundle_json(bundle).decode("utf-8")


def publish_draw(db: Session, draw_id: int, actor: str) -> Draw:
    """Step 3: reveal the secret; the bundle (every input, ticket and pick) becomes public (state "published")."""
    with _one_change(db):
        draw = _locked_draw(db, draw_id)
        if draw.state != "drawn":
            raise ApiError(409, "draw_state", f"任务 {draw.task_number} 状态为 {draw.state}，不能公布 / task "
                                              f"{draw.task_number} is {draw.state}, only a drawn task can be published")
        draw.published_by, draw.published_at = actor, now(db)
        draw.bundle = _build_bundle(draw)
        draw.state = "published"
        record(db, actor, "draw.publish", draw.task_number,
               {"secret": draw.secret, "bundle_sha256": hashlib.sha256(draw.bundle.encode("utf-8")).hexdigest()})
    return draw


# --- replace ------------------------------------------------------------------------------------------------------

def _active_pick(db: Session, draw: Draw, venue_code: str) -> DrawVenue:
    pick = db.execute(select(DrawVenue).join(Venue, DrawVenue.venue_id == Venue.id)
                      .where(DrawVenue.draw_id == draw.id, Venue.credit_code == venue_code,
                             DrawVenue.active.is_(True))).unique().scalar_one_or_none()
    if pick is None:
        raise ApiError(409, "pick_not_active", f"{venue_code} 不是任务 {draw.task_number} 的有效抽中场所 / "
                                               f"{venue_code} is not an active pick of task {draw.task_number}")
    return pick


def replace_pick(db: Session, draw_id: int, *, venue_code: str, inspector_badge: str | None = None,
                 approver: Officer, reason: str, actor: str) -> Draw:
    """Replace a drawn venue (or one inspector of its team) with the next ticket of the same stream.

    Only with an approver (seed 000: 未经本级公安机关负责人批准不得调整更改) and a
    reason; both, with the time, go into the draw's replacements, the audit
    log and (approver by badge) the bundle, which is rebuilt if published.
    """
    found = [algo.field_problem("信用代码", "credit code", venue_code)]
    if inspector_badge is not None:
        found.append(algo.field_problem("警号", "badge", inspector_badge))
    if any(found):  # refused before they go into a query
        raise ApiError(422, "bad_key", "; ".join(p for p in found if p))
    with _one_change(db):
        draw = _locked_draw(db, draw_id)
        if draw.state not in ("drawn", "published"):
            raise ApiError(409, "draw_state", f"任务 {draw.task_number} 尚未抽取 / task {draw.task_number} is "
                                              "not drawn")
        reason = clean_text(reason, "替换理由 / reason", _REASON_LIMIT)
        if not approver.active:
            raise ApiError(403, "approver_inactive", "批准人账号已停用 / the approver's account is inactive")
        pick = _active_pick(db, draw, venue_code)
        if inspector_badge is not None and inspector_badge not in team(pick):
            raise ApiError(409, "pick_not_active", f"{inspector_badge} 不在 {venue_code} 的检查组中 / "
                                                   f"{inspector_badge} is not on the team of {venue_code}")
        request: dict[str, Any] = {"kind": "venue" if inspector_badge is None else "inspector", "venue": venue_code}
        if inspector_badge is not None:
            request["inspector"] = inspector_badge
        entries = json.loads(draw.replacements)
        outcome = _outcome(draw, [*entries, request])
        new = outcome.replacements[-1]
        final = {p.credit_code: p for p in outcome.final}
        if inspector_badge is None:
            pick.active = False
            if new is not None:
                _store_pick(draw, _venues_by_code(db, [new])[new], final[new])
        else:
            pick.inspectors = json.dumps(final[venue_code].inspectors, ensure_ascii=False)
        entry = {**request, "replacement": new, "reason": reason, "at": now(db).isoformat(),
                 "approved_by": {"name": approver.display_name, "badge": approver.badge,
                                 "username": approver.username}}
        draw.replacements = json.dumps([*entries, entry], ensure_ascii=False)
        if draw.state == "published":
            draw.bundle = _build_bundle(draw)
        record(db, actor, "draw.replace", draw.task_number, entry)
    return draw
