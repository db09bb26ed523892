"""The agent's tables (SQLAlchemy 2 typed ORM), its engine and the schema migration at start-up.

Times are stored as ISO 8601 text with their UTC offset (``IsoDateTime``):
what an officer reads in the database is what the case file says, and SQLite
has no time type of its own. The schema itself is made only by the Alembic
migrations in ``agent_api/migrations``; a test keeps these models and the
migrations equal.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from fastapi import Request
from sqlalchemy import (CheckConstraint, Engine, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint,
                        create_engine, event)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, sessionmaker

# The department's tables join Base.metadata here, so that the whole schema is there wherever it is migrated.
from agent_api import dept_tables  # noqa: F401  (imported for its tables)
from agent_api.orm import Base, IsoDateTime

__all__ = ["Base", "Officer", "WebSession", "Probe", "Report", "ManualItem", "Signoff", "AuditEntry",
           "IsoDateTime", "MANUAL_STATUSES", "make_engine", "make_sessions", "migrate", "alembic_config", "get_db"]

PACKAGE_DIR = Path(__file__).resolve().parent
# How long a writer waits for another (thread or process) to finish its transaction.
BUSY_SECONDS = 15.0

# What officers may record for a manual item (a finding's "manual" status means "not yet recorded").
MANUAL_STATUSES = ("pass", "fail", "not_applicable")

class Officer(Base):
    """A local officer account (argon2id password hash; the password itself is never stored)."""

    __tablename__ = "officers"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    badge: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(IsoDateTime)


class WebSession(Base):
    """A logged-in browser: the cookie holds a random token, the database only its SHA-256."""

    __tablename__ = "web_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    officer_id: Mapped[int] = mapped_column(ForeignKey("officers.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(IsoDateTime)
    expires_at: Mapped[datetime] = mapped_column(IsoDateTime)

    officer: Mapped[Officer] = relationship(lazy="joined")


class Probe(Base):
    """An enrolled probe key. Revoked keys stay, so that old reports keep naming their signer."""

    __tablename__ = "probes"

    id: Mapped[int] = mapped_column(primary_key=True)
    probe_id: Mapped[str] = mapped_column(String(200), unique=True)
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    public_key: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(200), default="")
    enrolled_by: Mapped[int | None] = mapped_column(ForeignKey("officers.id"))
    enrolled_at: Mapped[datetime] = mapped_column(IsoDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(IsoDateTime)


class Report(Base):
    """A received report: the envelope and signed payload exactly as received, plus the officers' case state.

    ``id`` is the receipt's ``record``. ``receipt`` is signed once, at first
    acceptance, and returned byte for byte for every identical resubmission.
    """

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[str] = mapped_column(String(36), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    probe_key_id: Mapped[str] = mapped_column(ForeignKey("probes.key_id"), index=True)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    venue_id: Mapped[str] = mapped_column(String(200))
    venue_name: Mapped[str] = mapped_column(String(200))
    task_id: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(IsoDateTime)
    ended_at: Mapped[datetime] = mapped_column(IsoDateTime)
    received_at: Mapped[datetime] = mapped_column(IsoDateTime, index=True)
    receipt: Mapped[bytes] = mapped_column(LargeBinary)
    result_type: Mapped[str | None] = mapped_column(String(40))
    result_note: Mapped[str | None] = mapped_column(Text)
    locked_at: Mapped[datetime | None] = mapped_column(IsoDateTime)

    probe: Mapped[Probe] = relationship(lazy="joined")
    manual_items: Mapped[list[ManualItem]] = relationship(back_populates="report", order_by="ManualItem.id")
    signoffs: Mapped[list[Signoff]] = relationship(back_populates="report", order_by="Signoff.id")


class ManualItem(Base):
    """What the officers recorded for one manual check of one report."""

    __tablename__ = "manual_items"
    __table_args__ = (
        UniqueConstraint("report_pk", "item_id"),
        CheckConstraint("status IN ('pass', 'fail', 'not_applicable')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    report_pk: Mapped[int] = mapped_column(ForeignKey("reports.id"))  # reports.id, the receipt's record
    item_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    officer_id: Mapped[int] = mapped_column(ForeignKey("officers.id"))
    updated_at: Mapped[datetime] = mapped_column(IsoDateTime)

    report: Mapped[Report] = relationship(back_populates="manual_items")
    officer: Mapped[Officer] = relationship(lazy="joined")


class Signoff(Base):
    """One officer's signature on a case; the second distinct officer's locks it."""

    __tablename__ = "signoffs"
    __table_args__ = (UniqueConstraint("report_pk", "officer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_pk: Mapped[int] = mapped_column(ForeignKey("reports.id"))
    officer_id: Mapped[int] = mapped_column(ForeignKey("officers.id"))
    signed_at: Mapped[datetime] = mapped_column(IsoDateTime)
    report_sha256: Mapped[str] = mapped_column(String(64))

    report: Mapped[Report] = relationship(back_populates="signoffs")
    officer: Mapped[Officer] = relationship(lazy="joined")


class AuditEntry(Base):
    """One line of the append-only audit log; ``hash`` chains it to the line before (see agent_api.audit).

    ``at`` is kept as the exact text that was hashed, not re-rendered from a datetime.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_subject", "subject"),)

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The driver must not open transactions on its own: the "begin" hook below does.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA journal_mode = WAL")
    # FULL: a receipt promises the report is stored, and the probe deletes its
    # pending copy on that promise, so each commit must reach the disk.
    cur.execute("PRAGMA synchronous = FULL")
    # No busy handler: _sqlite_begin waits for the write lock itself (WAL
    # readers never wait, and writers only wait at BEGIN IMMEDIATE).
    cur.execute("PRAGMA busy_timeout = 0")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    """Start every transaction with BEGIN IMMEDIATE, polling for the write lock every 0.5 ms.

    IMMEDIATE takes the write lock at BEGIN: two requests can then never read
    the same last audit hash and both append after it (a forked chain), nor
    fail later on a stale WAL snapshot. The wait is done here because SQLite's
    own busy handler sleeps in steps growing to 100 ms, which made the p99 of
    four concurrent submits ten times the sequential one.
    """
    raw = conn.connection.dbapi_connection
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            raw.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.0005)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys, WAL, full sync and write-locking transactions."""
    if url.startswith("sqlite"):
        # check_same_thread off: FastAPI runs a request's dependency and handler in pool threads.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_SECONDS})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def make_sessions(engine: Engine, info: dict[str, Any] | None = None) -> sessionmaker[Session]:
    """The session factory; ``info`` (e.g. the Settings) is reachable from every session as ``db.info``."""
    return sessionmaker(bind=engine, expire_on_commit=False, info=info or {})


def alembic_config(url: str | None = None) -> Config:
    """The package's Alembic configuration, found beside this file (editable install or clean clone alike)."""
    cfg = Config(str(PACKAGE_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (``alembic upgrade head``); a no-op when it is there."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def get_db(request: Request) -> Iterator[Session]:
    """FastAPI dependency: one session per request, closed (uncommitted work rolled back) afterwards."""
    with request.app.state.sessions() as db:
        yield db
