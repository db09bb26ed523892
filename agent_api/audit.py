"""The append-only audit log: who did what, when, chained by SHA-256.

Each entry's ``hash`` is SHA-256 over the previous entry's hash followed by
the entry's canonical JSON (seq, at, actor, action, subject, detail), so that
editing, removing or reordering any line breaks every hash after it. The
database refuses UPDATE and DELETE on the table (triggers made by the
migration); :func:`verify_chain` catches what bypasses them, e.g. an edited
copy of the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from agent_api.db import AuditEntry, Officer
from agent_api.settings import DEFAULT_TZ

__all__ = ["GENESIS", "CLI", "ANONYMOUS", "ChainCheck", "record", "verify_chain", "entries_about",
           "entry_hash", "officer_actor", "probe_actor", "now"]

GENESIS = "0" * 64
CLI = "cli"
ANONYMOUS = "anonymous"
# Any constant will do: it only has to be the same for every writer of the log.
_PG_LOCK_KEY = 0x6361666561756469


def officer_actor(officer: Officer) -> str:
    """The actor string of an officer."""
    return f"officer:{officer.username}"


def probe_actor(key_id: str) -> str:
    """The actor string of a probe, by its key id."""
    return f"probe:{key_id}"


def now(db: Session) -> datetime:
    """The current time in the zone of the session's Settings (``db.info["settings"]``), else Asia/Shanghai."""
    settings = db.info.get("settings")
    return settings.now() if settings is not None else datetime.now(ZoneInfo(DEFAULT_TZ))


def _canonical(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def entry_hash(prev_hash: str, seq: int, at: str, actor: str, action: str, subject: str, detail: str) -> str:
    """The chain hash of one entry (``detail`` is the stored JSON text)."""
    row = _canonical({"seq": seq, "at": at, "actor": actor, "action": action, "subject": subject, "detail": detail})
    return hashlib.sha256((prev_hash + row).encode("utf-8")).hexdigest()


def record(db: Session, actor: str, action: str, subject: str, detail: dict[str, Any] | None = None) -> AuditEntry:
    """Append one entry in the caller's transaction (the caller commits it with the change it records)."""
    if db.get_bind().dialect.name == "postgresql":
        # SQLite transactions here take the write lock at BEGIN (agent_api.db);
        # on PostgreSQL this lock serialises appenders so the chain cannot fork.
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    last = db.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    at = now(db).isoformat()
    detail_text = _canonical(detail or {})
    entry = AuditEntry(seq=seq, at=at, actor=actor, action=action, subject=subject, detail=detail_text,
                       prev_hash=prev, hash=entry_hash(prev, seq, at, actor, action, subject, detail_text))
    db.add(entry)
    db.flush()
    return entry


@dataclass(frozen=True)
class ChainCheck:
    """Result of :func:`verify_chain`: ``ok``, how many entries were read, and the first bad one."""

    ok: bool
    entries: int
    bad_seq: int | None = None
    problem: str | None = None


def verify_chain(db: Session) -> ChainCheck:
    """Re-check every entry's hash and link, in order; stop at the first break."""
    prev, expected_seq, count = GENESIS, 1, 0
    rows = db.execute(select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=500)).scalars()
    for e in rows:
        count += 1
        if e.seq != expected_seq:
            return ChainCheck(False, count, e.seq, f"序号不连续 / sequence gap: expected {expected_seq}, found {e.seq}")
        if e.prev_hash != prev:
            return ChainCheck(False, count, e.seq, "链接断开 / prev_hash does not match the entry before")
        if e.hash != entry_hash(prev, e.seq, e.at, e.actor, e.action, e.subject, e.detail):
            return ChainCheck(False, count, e.seq, "内容被改动 / the entry does not match its hash")
        prev, expected_seq = e.hash, e.seq + 1
    return ChainCheck(True, count)


def entries_about(db: Session, subject: str) -> list[AuditEntry]:
    """Every entry whose subject is ``subject`` (e.g. a report id), oldest first."""
    return list(db.execute(select(AuditEntry).where(AuditEntry.subject == subject).order_by(AuditEntry.seq)).scalars())
