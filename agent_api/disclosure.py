"""Public disclosure (一公开): published results with the credit publicity system's fields, as CSV, XLSX or JSON.

Exactly these fields, nothing personal (no inspector, no legal
representative, no address): plan number and name, task number and name,
check type (定向 / 不定向), authority (检查实施机关), venue name, credit code,
completion date, result (the official zh wording) and remark. A result
changed after publication shows its current type, and its remark says what
it was, when it changed and why (seed 001 (八)).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent_api import ApiError
from agent_api.dept_rules import DeptRules, dept_rules
from agent_api.dept_tables import CHECK_TYPE_WORDS, Draw, DrawVenue, Plan, Result
from agent_api.registry_io import write_csv, write_xlsx

__all__ = ["DisclosureRow", "FIELDS", "HEADERS_ZH", "CHECK_TYPE_WORDS", "EXPORT_FORMATS", "disclosure_rows",
           "export_disclosure", "change_note"]

_CHECK_TYPE_CODES = {zh: code for code, zh in CHECK_TYPE_WORDS.items()}
EXPORT_FORMATS = ("csv", "xlsx", "json")
# (English key, zh header) in the publicity system's order.
_COLUMNS = (
    ("plan_number", "抽查计划编号"),
    ("plan_name", "抽查计划名称"),
    ("task_number", "抽查任务编号"),
    ("task_name", "抽查任务名称"),
    ("check_type", "抽查类型"),
    ("authority", "检查实施机关"),
    ("venue_name", "检查对象名称"),
    ("credit_code", "统一社会信用代码"),
    ("completed_on", "检查完成日期"),
    ("result", "检查结果"),
    ("remark", "备注"),
)
FIELDS = tuple(key for key, _ in _COLUMNS)
HEADERS_ZH = tuple(zh for _, zh in _COLUMNS)
SHEET_TITLE = "抽查结果公示"


@dataclass(frozen=True)
class DisclosureRow:
    """One published result as disclosed; ``check_type`` and ``result`` are the zh wordings."""

    plan_number: str
    plan_name: str
    task_number: str
    task_name: str
    check_type: str
    authority: str
    venue_name: str
    credit_code: str
    completed_on: date
    result: str
    remark: str
    result_type: str  # the stable code, for the JSON export


def change_note(zh_from: str, on: date, reason: str) -> str:
    """The remark's sentence for a published result changed later."""
    return f"原结果“{zh_from}”，经进一步调查于 {on.isoformat()} 修改：{reason}"


def disclosure_rows(db: Session, *, published_only: bool = True, jurisdiction: str | None = None,
                    year: int | None = None, rules: DeptRules | None = None) -> list[DisclosureRow]:
    """The disclosed rows (published results only unless told otherwise), by plan, task and credit code."""
    types = (rules or dept_rules()).ruleset.result_types
    query = (select(Result, DrawVenue, Draw, Plan).join(DrawVenue, Result.draw_venue_id == DrawVenue.id)
             .join(Draw, DrawVenue.draw_id == Draw.id).join(Plan, Draw.plan_id == Plan.id)
             .where(DrawVenue.active.is_(True)))
    if published_only:
        query = query.where(Result.published_at.is_not(None))
    if jurisdiction is not None:
        query = query.where(Plan.jurisdiction == jurisdiction)
    if year is not None:
        query = query.where(Plan.year == year)
    rows = []
    for result, pick, draw, plan in db.execute(query):
        notes = [change_note(types[c.from_type].zh, c.changed_at.date(), c.reason) for c in result.changes]
        rows.append(DisclosureRow(
            plan_number=plan.plan_number, plan_name=plan.name, task_number=draw.task_number,
            task_name=draw.task_name, check_type=CHECK_TYPE_WORDS[draw.check_type], authority=draw.authority,
            venue_name=pick.venue.name, credit_code=pick.venue.credit_code, completed_on=result.completed_on,
            result=types[result.result_type].zh, remark="；".join([result.remark, *notes] if result.remark else notes),
            result_type=result.result_type))
    rows.sort(key=lambda r: (r.plan_number, r.task_number, r.credit_code))
    return rows


def _cells(rows: list[DisclosureRow]) -> list[list[str]]:
    return [[v.isoformat() if isinstance(v, date) else v for v in (getattr(r, key) for key in FIELDS)] for r in rows]


def _json(rows: list[DisclosureRow]) -> bytes:
    items = []
    for r in rows:
        item = asdict(r)
        item["completed_on"] = r.completed_on.isoformat()
        item["check_type"] = _CHECK_TYPE_CODES[r.check_type]
        item["check_type_zh"] = r.check_type
        items.append(item)
    return json.dumps(items, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


def export_disclosure(db: Session, fmt: Literal["csv", "xlsx", "json"], *, published_only: bool = True,
                      jurisdiction: str | None = None, year: int | None = None,
                      rules: DeptRules | None = None) -> bytes:
    """The disclosure as ``fmt`` bytes: CSV (UTF-8 with BOM) or XLSX with zh headers first, or JSON.

    JSON rows use stable English keys, with the check type and result both as
    code (``check_type``, ``result_type``) and zh wording (``check_type_zh``,
    ``result``). CSV and XLSX cells are guarded against formula injection
    (agent_api.registry_io). 422 for another format.
    """
    if fmt not in EXPORT_FORMATS:
        raise ApiError(422, "bad_format", f"格式须为 / format must be one of {', '.join(EXPORT_FORMATS)}")
    rows = disclosure_rows(db, published_only=published_only, jurisdiction=jurisdiction, year=year, rules=rules)
    if fmt == "json":
        return _json(rows)
    if fmt == "csv":
        return write_csv(HEADERS_ZH, _cells(rows))
    return write_xlsx(SHEET_TITLE, HEADERS_ZH, _cells(rows))
