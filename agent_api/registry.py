"""The two registries (两库) and the declared conflicts (回避) in the database: import, export, single changes.

Venues (检查对象名录库), inspectors (执法检查人员名录库) and conflicts are
described by their :class:`Column` lists (agent_api.registry_io, which also
holds the one validator of a row and the file reading and writing, none of
it touching the database); this module checks rows against the database,
saves them and writes the audit log. It is the registries' public surface. An
import is all or nothing: every row is validated first and any problem
refuses the whole file with every bad row listed (:class:`ImportRefused`);
otherwise entries are upserted by key (credit code, badge, badge + credit
code) and entries not in the file are left alone. An optional column left
out of the file (场所编号, 在岗) leaves that field of existing entries alone.

Credit codes follow GB 32100-2015, checked by python-stdnum's
``stdnum.cn.uscc``: a malformed code is refused; a well-formed code whose
check character is wrong (such codes were issued) is stored with
``code_check`` "mismatch" until a person confirms it
(:func:`confirm_credit_code`). No field may hold control characters: the
draw's snapshot is tab-separated lines.

Audit: one ``registry.import`` entry per import (actor, file name, SHA-256 of
the file, counts, the keys added and every changed field with its old and new
value), not one per row, so that an import of 100,000 venues is one entry;
one entry per single change. Blacklist changes, whatever makes them, also
append a :class:`~agent_api.dept_tables.CreditEvent`; :func:`set_blacklist`
is the one way to change the blacklist outside a registry edit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent_api import ApiError
from agent_api.audit import now, record
from agent_api.cases import ruleset
from agent_api.dept_tables import Conflict, CreditEvent, Inspector, Venue
from agent_api.registry_io import (CONFLICT_COLUMNS, INSPECTOR_COLUMNS, TEXT_LIMIT, VENUE_COLUMNS, Column,
                                   EntryRefused, ImportRefused, Row, RowProblem, credit_code_check, flag_duplicates,
                                   ident, normalise_credit_code, parse_row, require_all, required_text, shown,
                                   table_rows, write_csv, write_xlsx)
from probe.rules import RulesError

__all__ = ["TEXT_LIMIT", "Column", "ImportSummary", "RowProblem", "ImportRefused", "EntryRefused", "VENUE_COLUMNS",
           "INSPECTOR_COLUMNS", "CONFLICT_COLUMNS", "shown", "normalise_credit_code", "credit_code_check",
           "import_venues", "import_inspectors", "import_conflicts", "export_venues", "export_inspectors",
           "export_conflicts", "save_venue", "save_inspector", "add_conflict", "remove_conflict", "set_blacklist",
           "set_status", "confirm_credit_code", "list_venues", "count_venues", "list_inspectors",
           "count_inspectors", "list_conflicts", "get_venue", "get_inspector", "credit_history",
           "unconfirmed_codes"]

ExportFormat = Literal["csv", "xlsx"]
Source = tuple[str, str]  # what made a change, zh and en ("名录导入（file）"), for the credit history


# --- saving rows ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportSummary:
    """What an import did: entries ``added``, ``updated`` and ``unchanged``; ``flagged`` credit codes await a person."""

    added: int
    updated: int
    unchanged: int
    flagged: list[str]


@dataclass
class _Changes:
    """What applying rows did, for the summary and the audit entry."""

    entities: list[Any] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    updated: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    unchanged: int = 0
    flagged: list[str] = field(default_factory=list)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def _assign(entity: Any, target: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Set the fields that differ; returns {field: [old, new]} of them."""
    diff = {}
    for key, value in target.items():
        old = getattr(entity, key)
        if old != value:
            diff[key] = [_jsonable(old), _jsonable(value)]
            setattr(entity, key, value)
    return diff


def _note(changes: _Changes, key: str, entity: Any, diff: dict[str, list[Any]], at: datetime) -> None:
    changes.entities.append(entity)
    if diff:
        entity.updated_at = at
        changes.updated[key] = diff
    else:
        changes.unchanged += 1


def _by(db: Session, column: Any, values: Iterable[Any]) -> list[Any]:
    """Rows whose ``column`` is one of ``values``, asked in chunks (databases cap the parameters of a statement)."""
    wanted, found = sorted(set(values)), []
    for start in range(0, len(wanted), 5000):
        found.extend(db.execute(select(column.class_).where(column.in_(wanted[start:start + 5000]))).scalars())
    return found


@dataclass(frozen=True)
class _Registry:
    """How one registry is validated against the database, saved and exported."""

    name: str
    zh: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    prepare: Callable[[Session, list[Row]], Any]  # loads what exists and flags rows; returns the context
    apply: Callable[[Session, list[Row], Any, str, Source], _Changes]
    export_query: Callable[[str | None], Select]

    def column(self, key: str) -> Column:
        return next(col for col in self.columns if col.key == key)


# --- venues ---------------------------------------------------------------------------------------------------------

_BLACKLIST = ("blacklisted", "blacklist_reason", "blacklisted_on")


def _prepare_venues(db: Session, rows: list[Row]) -> dict[str, Venue]:
    existing = {v.credit_code: v for v in _by(db, Venue.credit_code, (r.values["credit_code"] for r in rows
                                                                         if "credit_code" in r.values))}
    for row in rows:
        venue = existing.get(row.values.get("credit_code"))
        if venue is None:
            require_all(VENUE_COLUMNS, row)
        if row.bad("blacklisted"):
            continue  # whether the other two belong there is unknown
        merged = {k: row.values.get(k, getattr(venue, k, None)) for k in _BLACKLIST}
        if merged["blacklisted"]:
            for key in _BLACKLIST[1:]:
                if merged[key] is None:
                    row.flag(key, "列入黑名单时必填", "required when blacklisted")
        else:
            for key in _BLACKLIST[1:]:
                if row.values.get(key) is not None:
                    row.flag(key, "未列入黑名单时应为空", "must be empty unless blacklisted")
    _check_site_ids(db, rows)
    return existing


def _check_site_ids(db: Session, rows: list[Row]) -> None:
    """A probe profile's site id belongs to one venue: not twice in the file, not another venue's already."""
    first: dict[str, Row] = {}
    for row in rows:
        site = row.values.get("site_id")
        if site is not None and site in first:
            row.flag("site_id", f"与第 {first[site].number} 行重复", f"duplicate of row {first[site].number}")
        elif site is not None:
            first[site] = row
    for holder in _by(db, Venue.site_id, first):
        row = first[holder.site_id]
        if holder.credit_code != row.values.get("credit_code"):
            row.flag("site_id", f"已属于 {holder.credit_code}（{holder.name}）",
                     f"already belongs to {holder.credit_code} ({holder.name})")


def _apply_venues(db: Session, rows: list[Row], existing: dict[str, Venue], actor: str, source: Source) -> _Changes:
    at, changes = now(db), _Changes()
    for row in rows:
        code = row.values["credit_code"]
        venue, is_new = existing.get(code), code not in existing
        if venue is None:
            venue = Venue(credit_code=code, code_check=credit_code_check(code), site_id=None, blacklisted=False,
                          blacklist_reason=None, blacklisted_on=None, created_at=at, updated_at=at)
            db.add(venue)
            changes.added.append(code)
        was_blacklisted = venue.blacklisted
        target = {k: v for k, v in row.values.items() if k != "credit_code"}
        if not target.get("blacklisted", venue.blacklisted):
            target.update(blacklist_reason=None, blacklisted_on=None)
        diff = _assign(venue, target)
        if is_new:
            changes.entities.append(venue)
        else:
            _note(changes, code, venue, diff, at)
        _blacklist_event(db, venue, was_blacklisted, actor, at,
                         f"{source[0]}移出黑名单 / removed from the blacklist by {source[1]}", at.date())
        if venue.code_check == "mismatch":
            changes.flagged.append(code)
    return changes


def _blacklist_event(db: Session, venue: Venue, was: bool, actor: str, at: datetime, removal_reason: str,
                     removal_on: date, task_number: str | None = None, result_type: str | None = None) -> None:
    """The credit-history line of a blacklist change (none when the flag did not change).

    An addition's reason and date are the venue's new blacklist fields; a removal's are given.
    """
    if venue.blacklisted == was:
        return
    added = venue.blacklisted
    db.add(CreditEvent(venue=venue, kind="blacklist_add" if added else "blacklist_remove", result_type=result_type,
                       task_number=task_number, reason=venue.blacklist_reason if added else removal_reason,
                       event_on=venue.blacklisted_on if added else removal_on, recorded_by=actor, recorded_at=at))


def _venue_query(jurisdiction: str | None) -> Select:
    query = select(*(getattr(Venue, col.key) for col in VENUE_COLUMNS)).order_by(Venue.credit_code)
    return query if jurisdiction is None else query.where(Venue.jurisdiction == jurisdiction)


# --- inspectors -----------------------------------------------------------------------------------------------------

def _prepare_inspectors(db: Session, rows: list[Row]) -> dict[str, Inspector]:
    existing = {i.badge: i for i in _by(db, Inspector.badge, (r.values["badge"] for r in rows if "badge" in r.values))}
    for row in rows:
        if row.values.get("badge") not in existing:
            require_all(INSPECTOR_COLUMNS, row)
    return existing


def _apply_inspectors(db: Session, rows: list[Row], existing: dict[str, Inspector], actor: str,
                      source: Source) -> _Changes:
    at, changes = now(db), _Changes()
    for row in rows:
        badge = row.values["badge"]
        inspector = existing.get(badge)
        if inspector is None:
            values = {"active": True, **row.values}
            inspector = Inspector(**values, created_at=at, updated_at=at)
            db.add(inspector)
            changes.added.append(badge)
            changes.entities.append(inspector)
        else:
            _note(changes, badge, inspector, _assign(inspector, row.values), at)
    return changes


def _inspector_query(jurisdiction: str | None) -> Select:
    query = select(*(getattr(Inspector, col.key) for col in INSPECTOR_COLUMNS)).order_by(Inspector.badge)
    return query if jurisdiction is None else query.where(Inspector.jurisdiction == jurisdiction)


# --- conflicts ------------------------------------------------------------------------------------------------------

@dataclass
class _ConflictContext:
    inspectors: dict[str, Inspector]
    venues: dict[str, Venue]
    existing: dict[tuple[int, int], Conflict]


def _prepare_conflicts(db: Session, rows: list[Row]) -> _ConflictContext:
    inspectors = {i.badge: i for i in _by(db, Inspector.badge, (r.values["badge"] for r in rows
                                                                 if "badge" in r.values))}
    venues = {v.credit_code: v for v in _by(db, Venue.credit_code, (r.values["credit_code"] for r in rows
                                                                     if "credit_code" in r.values))}
    for row in rows:
        if "badge" in row.values and row.values["badge"] not in inspectors:
            row.flag("badge", "执法检查人员名录中没有该警号", "no such badge in the inspector registry")
        if "credit_code" in row.values and row.values["credit_code"] not in venues:
            row.flag("credit_code", "检查对象名录中没有该统一社会信用代码", "no such credit code in the venue registry")
    ids = [i.id for i in inspectors.values()]
    existing = {(c.inspector_id, c.venue_id): c for c in _by(db, Conflict.inspector_id, ids)}
    return _ConflictContext(inspectors, venues, existing)


def _apply_conflicts(db: Session, rows: list[Row], ctx: _ConflictContext, actor: str,
                     source: Source) -> _Changes:
    at, changes = now(db), _Changes()
    for row in rows:
        badge, code = row.values["badge"], row.values["credit_code"]
        inspector, venue = ctx.inspectors[badge], ctx.venues[code]
        target = {"reason": row.values["reason"], "declared_on": row.values["declared_on"]}
        conflict = ctx.existing.get((inspector.id, venue.id))
        if conflict is None:
            conflict = Conflict(inspector_id=inspector.id, venue_id=venue.id, created_at=at, **target)
            db.add(conflict)
            changes.added.append(f"{badge}/{code}")
            changes.entities.append(conflict)
        else:
            changes.entities.append(conflict)
            diff = _assign(conflict, target)
            if diff:
                changes.updated[f"{badge}/{code}"] = diff
            else:
                changes.unchanged += 1
    return changes


def _conflict_query(jurisdiction: str | None) -> Select:
    query = (select(Inspector.badge, Venue.credit_code, Conflict.reason, Conflict.declared_on)
             .join(Conflict.inspector).join(Conflict.venue).order_by(Inspector.badge, Venue.credit_code))
    if jurisdiction is None:
        return query
    return query.where(or_(Inspector.jurisdiction == jurisdiction, Venue.jurisdiction == jurisdiction))


VENUES = _Registry("venues", "检查对象名录库", VENUE_COLUMNS, ("credit_code",), _prepare_venues, _apply_venues,
                   _venue_query)
INSPECTORS = _Registry("inspectors", "执法检查人员名录库", INSPECTOR_COLUMNS, ("badge",), _prepare_inspectors,
                       _apply_inspectors, _inspector_query)
CONFLICTS = _Registry("conflicts", "回避申报", CONFLICT_COLUMNS, ("badge", "credit_code"), _prepare_conflicts,
                      _apply_conflicts, _conflict_query)


# --- import ---------------------------------------------------------------------------------------------------------

@contextmanager
def _writing(db: Session) -> Iterator[None]:
    """One transaction for a change and its audit entry, committed at the end of the block.

    Any refusal rolls back (nothing half-done stays in the session, and
    SQLite's write lock is released); a key another writer took meanwhile
    (IntegrityError, at a flush or at the commit) becomes a 409.
    """
    try:
        yield
        db.commit()
    except IntegrityError:
        db.rollback()
        raise ApiError(409, "registry_changed", "名录在此期间已被修改，未保存，请重试 / the registry changed "
                                                "meanwhile: nothing was stored, try again") from None
    except BaseException:
        db.rollback()
        raise


def _import(db: Session, reg: _Registry, data: bytes, filename: str, actor: str) -> ImportSummary:
    rows, headers, problems = table_rows(data, reg.columns, reg.name)
    flag_duplicates(rows, reg.key)
    with _writing(db):
        context = reg.prepare(db, rows)
        for row in rows:
            problems.extend(RowProblem(row.number, headers.get(key, reg.column(key).zh), zh, en)
                            for key, zh, en in row.problems)
        if problems:
            raise ImportRefused(problems)
        changes = reg.apply(db, rows, context, actor, (f"名录导入（{filename}）", f"the registry import of {filename}"))
        record(db, actor, "registry.import", f"registry:{reg.name}",
               {"file": filename[:200], "sha256": hashlib.sha256(data).hexdigest(), "rows": len(rows),
                "added": len(changes.added), "updated": len(changes.updated), "unchanged": changes.unchanged,
                "flagged": changes.flagged, "added_keys": changes.added, "changes": changes.updated})
    return ImportSummary(len(changes.added), len(changes.updated), changes.unchanged, changes.flagged)


def import_venues(db: Session, data: bytes, filename: str, actor: str) -> ImportSummary:
    """Import the venue registry from CSV or XLSX bytes; all or nothing (:class:`ImportRefused`, 422)."""
    return _import(db, VENUES, data, filename, actor)


def import_inspectors(db: Session, data: bytes, filename: str, actor: str) -> ImportSummary:
    """Import the inspector registry from CSV or XLSX bytes; all or nothing (:class:`ImportRefused`, 422)."""
    return _import(db, INSPECTORS, data, filename, actor)


def import_conflicts(db: Session, data: bytes, filename: str, actor: str) -> ImportSummary:
    """Import declared conflicts (badge + credit code, both already registered); all or nothing."""
    return _import(db, CONFLICTS, data, filename, actor)


# --- export ---------------------------------------------------------------------------------------------------------

def _export(db: Session, reg: _Registry, fmt: ExportFormat, jurisdiction: str | None) -> bytes:
    header = [col.zh for col in reg.columns]
    rows = ([col.render(value) if value is not None else "" for col, value in zip(reg.columns, values, strict=True)]
            for values in db.execute(reg.export_query(jurisdiction)))
    if fmt == "csv":
        return write_csv(header, rows)
    if fmt == "xlsx":
        return write_xlsx(reg.zh, header, rows)
    raise ApiError(422, "unknown_format", f"格式须为 csv 或 xlsx / format must be csv or xlsx: {fmt}")


def export_venues(db: Session, fmt: ExportFormat, jurisdiction: str | None = None) -> bytes:
    """The venue registry as CSV (UTF-8 with BOM) or XLSX, Chinese headers and words; re-imports unchanged."""
    return _export(db, VENUES, fmt, jurisdiction)


def export_inspectors(db: Session, fmt: ExportFormat, jurisdiction: str | None = None) -> bytes:
    """The inspector registry as CSV or XLSX (see :func:`export_venues`)."""
    return _export(db, INSPECTORS, fmt, jurisdiction)


def export_conflicts(db: Session, fmt: ExportFormat, jurisdiction: str | None = None) -> bytes:
    """Declared conflicts as CSV or XLSX; ``jurisdiction``: the inspector's or the venue's."""
    return _export(db, CONFLICTS, fmt, jurisdiction)


# --- single changes -------------------------------------------------------------------------------------------------

def _entry(reg: _Registry, fields: Mapping[str, Any]) -> Row:
    cells = {key: "" if value is None else str(value) for key, value in fields.items()}
    row = parse_row(reg.columns, 0, cells)
    known = {col.key for col in reg.columns}
    for key in cells.keys() - known:
        row.flag(key, "未知字段", "unknown field")
    for key in reg.key:
        if key not in cells:
            row.flag(key, "必填", "required")
    return row


def _refuse_entry(reg: _Registry, row: Row) -> None:
    if row.problems:
        known = {col.key: col.zh for col in reg.columns}
        raise EntryRefused([RowProblem(0, known.get(key, key), zh, en) for key, zh, en in row.problems])


def _save(db: Session, reg: _Registry, fields: Mapping[str, Any], actor: str, kind: str) -> Any:
    row = _entry(reg, fields)
    with _writing(db):
        context = reg.prepare(db, [row])
        _refuse_entry(reg, row)
        changes = reg.apply(db, [row], context, actor, ("名录编辑", "a registry edit"))
        key = "/".join(str(v) for v in row.key(reg.key) or ())
        if changes.added:
            record(db, actor, f"{kind}.create", f"{kind}:{key}", {k: _jsonable(v) for k, v in row.values.items()})
        elif changes.updated:
            record(db, actor, f"{kind}.update", f"{kind}:{key}", {"changes": changes.updated[key]})
    return changes.entities[0]


def save_venue(db: Session, fields: Mapping[str, str], actor: str) -> Venue:
    """Create or change one venue (fields by column key, text as in an import); absent fields are left alone.

    Same validation as an import row (:class:`EntryRefused`, 422). A change of
    ``blacklisted`` also writes the credit-history line.
    """
    return _save(db, VENUES, fields, actor, "venue")


def save_inspector(db: Session, fields: Mapping[str, str], actor: str) -> Inspector:
    """Create or change one inspector (fields by column key); same validation as an import row."""
    return _save(db, INSPECTORS, fields, actor, "inspector")


def add_conflict(db: Session, badge: str, credit_code: str, reason: str, declared_on: date, actor: str) -> Conflict:
    """Record an inspector's declared conflict with a venue; 409 when it is already declared."""
    row = _entry(CONFLICTS, {"badge": badge, "credit_code": credit_code, "reason": reason,
                             "declared_on": declared_on.isoformat()})
    with _writing(db):
        ctx = _prepare_conflicts(db, [row])
        _refuse_entry(CONFLICTS, row)
        key = (ctx.inspectors[row.values["badge"]].id, ctx.venues[row.values["credit_code"]].id)
        if key in ctx.existing:
            raise ApiError(409, "conflict_exists", f"该回避已申报 / conflict already declared: {badge} {credit_code}")
        conflict = _apply_conflicts(db, [row], ctx, actor, ("名录编辑", "a registry edit")).entities[0]
        record(db, actor, "conflict.add", f"conflict:{row.values['badge']}/{row.values['credit_code']}",
               {"reason": row.values["reason"], "declared_on": declared_on.isoformat()})
    return conflict


def remove_conflict(db: Session, badge: str, credit_code: str, reason: str, actor: str) -> None:
    """Withdraw a declared conflict, with the reason (recorded with what the conflict said); 404 if none."""
    why = required_text(reason, "撤销原因", "reason")
    code = normalise_credit_code(credit_code)
    with _writing(db):
        conflict = db.execute(select(Conflict).join(Conflict.inspector).join(Conflict.venue)
                              .where(Inspector.badge == ident(badge), Venue.credit_code == code)).scalar_one_or_none()
        if conflict is None:
            raise ApiError(404, "unknown_conflict", f"没有该回避申报 / no such conflict: {badge} {code}")
        record(db, actor, "conflict.remove", f"conflict:{conflict.inspector.badge}/{code}",
               {"reason": why, "declared_reason": conflict.reason, "declared_on": conflict.declared_on.isoformat()})
        db.delete(conflict)


def _one(db: Session, column: Any, value: str, code: str, words: str) -> Any:
    """The entry whose unique ``column`` is ``value``; 404 with ``words`` ("中文 / English") otherwise."""
    found = db.execute(select(column.class_).where(column == value)).scalar_one_or_none()
    if found is None:
        raise ApiError(404, code, f"{words}: {value}")
    return found


def get_venue(db: Session, credit_code: str) -> Venue:
    """The venue with this credit code (any spelling of it); 404 otherwise."""
    return _one(db, Venue.credit_code, normalise_credit_code(credit_code), "unknown_venue",
                "检查对象名录中没有 / no such venue")


def get_inspector(db: Session, badge: str) -> Inspector:
    """The inspector with this badge number; 404 otherwise."""
    return _one(db, Inspector.badge, ident(badge), "unknown_inspector", "执法检查人员名录中没有 / no such inspector")


def set_blacklist(db: Session, credit_code: str, blacklisted: bool, reason: str, on: date, actor: str, *,
                  task_number: str | None = None, result_type: str | None = None, commit: bool = True) -> Venue:
    """Put a venue on the blacklist or take it off, with the reason: Venue fields, CreditEvent and audit.

    ``on``: the date of the blacklisting (for a removal, the event's date).
    ``task_number`` / ``result_type``: the published result that caused it, if
    one did. Asking for the state the venue is already in changes nothing.
    ``commit=False`` makes the change in the caller's transaction (flushed,
    not committed), so that publishing results and the blacklistings they
    cause stand or fall together.
    """
    why = required_text(reason, "原因", "reason")
    if result_type is not None:
        try:
            result_type = ruleset().result_type(result_type).code
        except RulesError as exc:
            raise ApiError(422, "unknown_result_type", f"没有该检查结果类型 / {exc}") from None
    if not commit:
        venue = _blacklist_change(db, credit_code, blacklisted, why, on, actor, task_number, result_type)
        db.flush()
        return venue
    with _writing(db):
        return _blacklist_change(db, credit_code, blacklisted, why, on, actor, task_number, result_type)


def _blacklist_change(db: Session, credit_code: str, blacklisted: bool, why: str, on: date, actor: str,
                      task_number: str | None, result_type: str | None) -> Venue:
    venue = get_venue(db, credit_code)
    if venue.blacklisted == blacklisted:
        return venue
    at = now(db)
    target = ({"blacklisted": True, "blacklist_reason": why, "blacklisted_on": on} if blacklisted else
              {"blacklisted": False, "blacklist_reason": None, "blacklisted_on": None})
    diff = _assign(venue, target)
    venue.updated_at = at
    _blacklist_event(db, venue, not blacklisted, actor, at, why, on, task_number, result_type)
    record(db, actor, "venue.blacklist" if blacklisted else "venue.unblacklist", f"venue:{venue.credit_code}",
           {"reason": why, "on": on.isoformat(), "task_number": task_number, "result_type": result_type,
            "changes": diff})
    return venue


def set_status(db: Session, credit_code: str, status: str, reason: str, actor: str) -> Venue:
    """Change a venue's status (营业/停业/吊销 or open/closed/revoked), with the reason; same status: no change."""
    why = required_text(reason, "原因", "reason")
    row = parse_row(VENUE_COLUMNS, 0, {"status": status})
    _refuse_entry(VENUES, row)
    code = row.values["status"]
    with _writing(db):
        venue = get_venue(db, credit_code)
        if venue.status != code:
            record(db, actor, "venue.status", f"venue:{venue.credit_code}",
                   {"from": venue.status, "to": code, "reason": why})
            venue.status, venue.updated_at = code, now(db)
    return venue


def confirm_credit_code(db: Session, credit_code: str, actor: str, note: str) -> Venue:
    """A person confirms a credit code whose check character does not match (checked against the licence)."""
    why = required_text(note, "说明", "note")
    with _writing(db):
        venue = get_venue(db, credit_code)
        if venue.code_check != "mismatch":
            raise ApiError(409, "code_not_flagged", f"该代码无需确认（{venue.code_check}）/ nothing to confirm: "
                                                    f"{venue.credit_code} is {venue.code_check}")
        at = now(db)
        venue.code_check, venue.code_confirmed_by, venue.code_confirmed_at = "confirmed", actor, at
        venue.updated_at = at
        record(db, actor, "venue.confirm_code", f"venue:{venue.credit_code}", {"note": why})
    return venue


# --- readers --------------------------------------------------------------------------------------------------------

# What a reader's ``query`` is looked for in (case-insensitive substring), by registry.
_SEARCHED = {Venue: ("name", "credit_code", "site_id"), Inspector: ("name", "badge", "unit")}


def _filtered(query: Select, model: type[Venue] | type[Inspector], jurisdiction: str | None,
              text: str | None) -> Select:
    if jurisdiction is not None:
        query = query.where(model.jurisdiction == jurisdiction)
    wanted = (text or "").strip()
    if wanted:
        query = query.where(or_(*(getattr(model, key).icontains(wanted, autoescape=True) for key in _SEARCHED[model])))
    return query


def _listed(db: Session, model: type[Venue] | type[Inspector], order: Any, jurisdiction: str | None,
            text: str | None, limit: int | None, offset: int) -> list[Any]:
    stmt = _filtered(select(model), model, jurisdiction, text).order_by(order).offset(offset).limit(limit)
    return list(db.execute(stmt).scalars())


def _counted(db: Session, model: type[Venue] | type[Inspector], jurisdiction: str | None, text: str | None) -> int:
    return db.execute(_filtered(select(func.count(model.id)), model, jurisdiction, text)).scalar_one()


def list_venues(db: Session, jurisdiction: str | None = None, query: str | None = None, *,
                limit: int | None = 100, offset: int = 0) -> list[Venue]:
    """Venues by credit code; ``query`` matches name, credit code or site id; ``limit`` None: all."""
    return _listed(db, Venue, Venue.credit_code, jurisdiction, query, limit, offset)


def count_venues(db: Session, jurisdiction: str | None = None, query: str | None = None) -> int:
    """How many venues :func:`list_venues` would list without a limit."""
    return _counted(db, Venue, jurisdiction, query)


def list_inspectors(db: Session, jurisdiction: str | None = None, query: str | None = None, *,
                    limit: int | None = 100, offset: int = 0) -> list[Inspector]:
    """Inspectors by badge; ``query`` matches name, badge or unit; ``limit`` None: all."""
    return _listed(db, Inspector, Inspector.badge, jurisdiction, query, limit, offset)


def count_inspectors(db: Session, jurisdiction: str | None = None, query: str | None = None) -> int:
    """How many inspectors :func:`list_inspectors` would list without a limit."""
    return _counted(db, Inspector, jurisdiction, query)


def list_conflicts(db: Session, jurisdiction: str | None = None, *, badge: str | None = None,
                   credit_code: str | None = None, limit: int | None = 100, offset: int = 0) -> list[Conflict]:
    """Declared conflicts by badge then credit code, filtered by jurisdiction (either side's), badge or venue."""
    stmt = select(Conflict).join(Conflict.inspector).join(Conflict.venue)
    if jurisdiction is not None:
        stmt = stmt.where(or_(Inspector.jurisdiction == jurisdiction, Venue.jurisdiction == jurisdiction))
    if badge is not None:
        stmt = stmt.where(Inspector.badge == ident(badge))
    if credit_code is not None:
        stmt = stmt.where(Venue.credit_code == normalise_credit_code(credit_code))
    stmt = stmt.order_by(Inspector.badge, Venue.credit_code).offset(offset).limit(limit)
    return list(db.execute(stmt).scalars())


def credit_history(db: Session, credit_code: str) -> list[CreditEvent]:
    """A venue's credit history, oldest first (404 for an unknown venue)."""
    venue = get_venue(db, credit_code)
    stmt = select(CreditEvent).where(CreditEvent.venue_id == venue.id).order_by(CreditEvent.event_on, CreditEvent.id)
    return list(db.execute(stmt).scalars())


def unconfirmed_codes(db: Session, jurisdiction: str | None = None) -> list[Venue]:
    """Venues whose credit code's check character does not match and nobody has confirmed yet."""
    stmt = select(Venue).where(Venue.code_check == "mismatch").order_by(Venue.credit_code)
    if jurisdiction is not None:
        stmt = stmt.where(Venue.jurisdiction == jurisdiction)
    return list(db.execute(stmt).scalars())
