"""The case: a received report with what the officers add to it, as one read-only view, and their changes.

:func:`load_case` builds a :class:`CaseView`, the one object the JSON API, the
web UI, the PDF and the exports render. :func:`set_manual_item`,
:func:`set_result` and :func:`sign_off` are the only ways the officers change a
case; each writes its audit entry in the same transaction and commits.

Rules of a case: manual items and the result type can change until the case
is locked; the second distinct officer's sign-off locks it. A sign-off needs
every manual item recorded and a result type chosen, and a change made after
a first sign-off withdraws that sign-off (the signer signed something else).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from agent_api import ApiError
from agent_api.audit import entries_about, now, officer_actor, record
from agent_api.db import MANUAL_STATUSES, ManualItem, Officer, Report, Signoff
from probe.findings import Status
from probe.observations import ClockCheck
from probe.report import ReportPayload
from probe.rules import CheckRule, ResultType, Ruleset, RulesError, load_ruleset

__all__ = ["CaseView", "ManualItemView", "OfficerRef", "ResultTypeView", "SignoffView", "AuditView",
           "ReportSummary", "SIGNOFFS_TO_LOCK", "ruleset", "manual_checks", "result_type_options", "load_case",
           "list_reports", "report_row", "set_manual_item", "set_result", "sign_off"]

SIGNOFFS_TO_LOCK = 2
ManualStatus = Literal["pass", "fail", "not_applicable"]


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class OfficerRef(_View):
    """An officer as shown on a case: ``username`` (login), ``display_name`` (姓名), ``badge`` (警号)."""

    username: str
    display_name: str
    badge: str

    @classmethod
    def of(cls, officer: Officer) -> OfficerRef:
        """The reference of an Officer row."""
        return cls(username=officer.username, display_name=officer.display_name, badge=officer.badge)


class ResultTypeView(_View):
    """An official result type: stable ``code`` (rules/result_types.yaml), ``zh`` wording, ``en`` label."""

    code: str
    zh: str
    en: str

    @classmethod
    def of(cls, rt: ResultType) -> ResultTypeView:
        """The view of a ruleset ResultType."""
        return cls(code=rt.code, zh=rt.zh, en=rt.en)


class ManualItemView(_View):
    """One manual check of the ruleset on this case, recorded or not.

    - ``item_id``: the check id (SIGNAGE, ADDRESS, SECURITY-OFFICER, REALNAME-ONSITE, ONLINE-COUNT, HARMFUL-INFO).
    - ``title_zh`` / ``title_en``: the catalogue's 检查项 wording.
    - ``probe_note_zh`` / ``probe_note_en``: what the probe's report says for this item (its finding's
      summary, e.g. the live-terminal count for ONLINE-COUNT); None when the report has no such finding.
    - ``status``: 'pass' | 'fail' | 'not_applicable', or None while nobody has recorded it.
    - ``note``: the officer's note ('' when none).
    - ``officer`` / ``updated_at``: who recorded it last, and when (None while unrecorded).
    """

    item_id: str
    title_zh: str
    title_en: str
    probe_note_zh: str | None
    probe_note_en: str | None
    status: ManualStatus | None
    note: str
    officer: OfficerRef | None
    updated_at: datetime | None


class SignoffView(_View):
    """A sign-off: the ``officer``, when (``signed_at``) and the report SHA-256 they signed (``report_sha256``)."""

    officer: OfficerRef
    signed_at: datetime
    report_sha256: str


class AuditView(_View):
    """An audit entry about this report: ``seq``, ``at`` (ISO text with offset), ``actor``, ``action``, ``detail``."""

    seq: int
    at: str
    actor: str
    action: str
    detail: dict[str, Any]


class CaseView(_View):
    """Everything about one received report, for the API, the web UI, the PDF and the exports.

    Identity (what a reader needs to verify the report offline):
    - ``record``: the agent's record number (reports.id; the receipt's ``record``).
    - ``report_id``: the report's UUID (also ``payload.report_id``).
    - ``sha256``: SHA-256 (hex) of the exact signed payload bytes, "the report's SHA-256".
    - ``key_id``: the signing probe key's id (SHA-256 hex of the raw Ed25519 public key).
    - ``probe_id`` / ``probe_label``: the enrolled probe that holds that key; ``probe_revoked`` if it was revoked since.
    - ``received_at``: when the agent first accepted it (aware datetime, with offset).

    The report itself:
    - ``payload``: the signed :class:`probe.report.ReportPayload`, re-parsed from the stored signed bytes:
      ``payload.venue`` (id, name, credit_code), ``payload.task`` (id, inspectors' badges),
      ``payload.started_at`` / ``ended_at`` (aware), ``payload.findings`` (each a probe.findings.Finding:
      check_id, status, title_zh/en, summary_zh/en, evidence dict, legal_basis [Citation], result_type),
      ``payload.counts`` (by status), ``payload.ruleset``, ``payload.evidence`` (files and digests).

    What the officers add:
    - ``manual_items``: every manual check of the current ruleset, in catalogue order (:class:`ManualItemView`).
    - ``result_type``: the chosen official result type (:class:`ResultTypeView`) or None; ``result_note``.
    - ``suggested_result_types``: result types the failed findings suggest (distinct, in finding order).
    - ``signoffs``: the sign-offs so far, oldest first (:class:`SignoffView`).
    - ``locked`` / ``locked_at``: locked by the second sign-off; nothing can change afterwards.
    - ``signoff_blockers``: what is still missing before anyone may sign ("中文 / English" lines; empty = ready).
    - ``audit``: the audit entries whose subject is this report, oldest first (:class:`AuditView`).
    """

    record: int
    report_id: str
    sha256: str
    key_id: str
    probe_id: str
    probe_label: str
    probe_revoked: bool
    received_at: datetime
    payload: ReportPayload
    manual_items: list[ManualItemView]
    result_type: ResultTypeView | None
    result_note: str | None
    suggested_result_types: list[ResultTypeView]
    signoffs: list[SignoffView]
    locked: bool
    locked_at: datetime | None
    signoff_blockers: list[str]
    audit: list[AuditView]


class ReportSummary(_View):
    """One line of the report list (newest received first); ``result_type`` is the chosen code or None."""

    record: int
    report_id: str
    probe_id: str
    venue_id: str
    venue_name: str
    task_id: str | None
    started_at: datetime
    received_at: datetime
    counts: dict[str, int]
    result_type: str | None
    locked: bool
    signoffs: int
    complete: bool = True          # False: an interrupted run (the payload says why)
    incomplete_reason: str = ""
    clock: ClockCheck | None = None  # the probe's clock as its self-test judged it


@lru_cache(maxsize=1)
def ruleset() -> Ruleset:
    """The ruleset in force on this device (loaded once per process)."""
    return load_ruleset()


def manual_checks() -> list[CheckRule]:
    """The manual checks of the ruleset, in catalogue order."""
    return [rule for rule in ruleset().checks.values() if rule.kind == "manual"]


def result_type_options() -> list[ResultTypeView]:
    """Every official result type, in rules/result_types.yaml order (for a choice list)."""
    return [ResultTypeView.of(rt) for rt in ruleset().result_types.values()]


def report_row(db: Session, report_id: str) -> Report:
    """The stored report with this id; 404 otherwise."""
    row = db.execute(select(Report).where(Report.report_id == report_id)).scalar_one_or_none()
    if row is None:
        raise ApiError(404, "unknown_report", f"没有该报告 / no such report: {report_id}")
    return row


def _blockers(items: list[ManualItemView], result_type: str | None) -> list[str]:
    missing = [i.item_id for i in items if i.status is None]
    lines = []
    if missing:
        lines.append(f"人工检查项未填写 / manual items not recorded: {', '.join(missing)}")
    if result_type is None:
        lines.append("未选择检查结果 / no result type chosen")
    return lines


def load_case(db: Session, report_id: str) -> CaseView:
    """The case view of a stored report (404 when there is none)."""
    row = report_row(db, report_id)
    payload = ReportPayload.model_validate_json(row.payload)
    rs = ruleset()
    by_check = {f.check_id: f for f in payload.findings}
    recorded = {m.item_id: m for m in row.manual_items}
    items = []
    for rule in manual_checks():
        finding, m = by_check.get(rule.id), recorded.get(rule.id)
        items.append(ManualItemView(
            item_id=rule.id, title_zh=rule.title_zh, title_en=rule.title_en,
            probe_note_zh=finding.summary_zh if finding else None, probe_note_en=finding.summary_en if finding else None,
            status=m.status if m else None, note=m.note if m else "",
            officer=OfficerRef.of(m.officer) if m else None, updated_at=m.updated_at if m else None))
    suggested = []
    for f in payload.findings:
        rt = rs.result_types.get(f.result_type or "") if f.status is Status.FAIL else None
        if rt is not None and ResultTypeView.of(rt) not in suggested:
            suggested.append(ResultTypeView.of(rt))
    chosen = rs.result_types.get(row.result_type) if row.result_type else None
    return CaseView(
        record=row.id, report_id=row.report_id, sha256=row.sha256, key_id=row.probe_key_id,
        probe_id=row.probe.probe_id, probe_label=row.probe.label, probe_revoked=row.probe.revoked_at is not None,
        received_at=row.received_at, payload=payload, manual_items=items,
        result_type=ResultTypeView.of(chosen) if chosen else None, result_note=row.result_note,
        suggested_result_types=suggested,
        signoffs=[SignoffView(officer=OfficerRef.of(s.officer), signed_at=s.signed_at, report_sha256=s.report_sha256)
                  for s in row.signoffs],
        locked=row.locked_at is not None, locked_at=row.locked_at,
        signoff_blockers=[] if row.locked_at else _blockers(items, row.result_type),
        audit=[AuditView(seq=e.seq, at=e.at, actor=e.actor, action=e.action, detail=json.loads(e.detail))
               for e in entries_about(db, row.report_id)])


def list_reports(db: Session, limit: int = 200, offset: int = 0) -> list[ReportSummary]:
    """Stored reports, newest received first."""
    signoffs = select(func.count(Signoff.id)).where(Signoff.report_pk == Report.id).scalar_subquery()
    rows = db.execute(select(Report, signoffs).order_by(Report.received_at.desc(), Report.id.desc())
                      .limit(limit).offset(offset)).all()
    summaries = []
    for r, n in rows:
        doc = json.loads(r.payload)
        summaries.append(ReportSummary(
            record=r.id, report_id=r.report_id, probe_id=r.probe.probe_id, venue_id=r.venue_id,
            venue_name=r.venue_name, task_id=r.task_id, started_at=r.started_at, received_at=r.received_at,
            counts=doc["counts"], result_type=r.result_type, locked=r.locked_at is not None, signoffs=n,
            complete=doc.get("complete", True), incomplete_reason=doc.get("incomplete_reason", ""),
            clock=doc.get("clock")))
    return summaries


def _editable(db: Session, report_id: str) -> Report:
    row = report_row(db, report_id)
    if row.locked_at is not None:
        raise ApiError(409, "locked", "报告已由两名检查人员签字锁定，不能修改 / the case is locked by two sign-offs")
    return row


def _withdraw_signoffs(db: Session, row: Report, officer: Officer, why: str) -> None:
    """A change after a sign-off: the earlier signatures covered another state, so they are withdrawn."""
    if not row.signoffs:
        return
    names = [s.officer.username for s in row.signoffs]
    db.execute(delete(Signoff).where(Signoff.report_pk == row.id))
    db.expire(row, ["signoffs"])
    record(db, officer_actor(officer), "signoff.withdraw", row.report_id, {"officers": names, "because": why})


def set_manual_item(db: Session, report_id: str, item_id: str, status: str, note: str, officer: Officer) -> None:
    """Record a manual item's result ('pass' | 'fail' | 'not_applicable') and note; commits.

    404 unknown report, 409 locked, 422 unknown item or status. Recording the same
    status and note again changes nothing and writes no audit entry.
    """
    row = _editable(db, report_id)
    if item_id not in {r.id for r in manual_checks()}:
        raise ApiError(422, "unknown_item", f"不是人工检查项 / not a manual item: {item_id}")
    if status not in MANUAL_STATUSES:
        raise ApiError(422, "bad_status", f"状态须为 {'/'.join(MANUAL_STATUSES)} / status must be one of {', '.join(MANUAL_STATUSES)}")
    note = note.strip()
    item = next((m for m in row.manual_items if m.item_id == item_id), None)
    if item is not None and (item.status, item.note) == (status, note):
        return
    if item is None:
        item = ManualItem(report_pk=row.id, item_id=item_id, status=status, note=note, officer_id=officer.id,
                          updated_at=now(db))
        db.add(item)
    else:
        item.status, item.note, item.officer_id, item.updated_at = status, note, officer.id, now(db)
    _withdraw_signoffs(db, row, officer, f"manual.set {item_id}")
    record(db, officer_actor(officer), "manual.set", row.report_id, {"item_id": item_id, "status": status, "note": note})
    db.commit()


def set_result(db: Session, report_id: str, code: str, note: str, officer: Officer) -> None:
    """Choose the official result type (code, zh wording, alias or English label) and note; commits.

    404 unknown report, 409 locked, 422 unknown result type.
    """
    row = _editable(db, report_id)
    try:
        rt = ruleset().result_type(code)
    except RulesError:
        raise ApiError(422, "unknown_result_type", f"没有该检查结果类型 / no such result type: {code}") from None
    note = note.strip()
    if (row.result_type, row.result_note or "") == (rt.code, note):
        return
    row.result_type, row.result_note = rt.code, note
    _withdraw_signoffs(db, row, officer, "result.set")
    record(db, officer_actor(officer), "result.set", row.report_id, {"result_type": rt.code, "note": note})
    db.commit()


def sign_off(db: Session, report_id: str, officer: Officer) -> bool:
    """Sign the case as ``officer``; commits and returns whether this sign-off locked it.

    404 unknown report, 409 locked / already signed by this officer / not ready (see ``signoff_blockers``).
    """
    case = load_case(db, report_id)
    row = _editable(db, report_id)
    if case.signoff_blockers:
        raise ApiError(409, "not_ready", "；".join(case.signoff_blockers))
    if any(s.officer.username == officer.username for s in case.signoffs):
        raise ApiError(409, "already_signed", "您已签字，需另一名检查人员签字 / you signed already; a second officer must sign")
    at = now(db)
    db.add(Signoff(report_pk=row.id, officer_id=officer.id, signed_at=at, report_sha256=row.sha256))
    locked = len(case.signoffs) + 1 >= SIGNOFFS_TO_LOCK
    if locked:
        row.locked_at = at
    record(db, officer_actor(officer), "signoff", row.report_id, {"report_sha256": row.sha256, "locked": locked})
    db.commit()
    return locked
