"""The agent's audit log (hash chain, append-only triggers), its schema migrations and start-up, and its CLI."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from agent_api.app import create_app, open_agent
from agent_api.audit import entry_hash, verify_chain
from agent_api.auth import authenticate, enroll_probe
from agent_api.cli import app as cli
from agent_api.db import AuditEntry, Base, Probe, alembic_config, make_engine
from agent_api.settings import Settings
from probe.keys import KeyFileError, key_id, load_public_key
from tests.agentkit import PROBE_ID, Agent, make_agent
from tests.reportkit import make_probe_key, make_report

runner = CliRunner()


@pytest.fixture()
def agent(tmp_path) -> Agent:
    return make_agent(tmp_path)


def _busy(agent: Agent) -> str:
    """A few audited actions: an accepted report, a duplicate, a manual item. Returns the report id."""
    envelope, verified = make_report(agent.probe_key)
    agent.submit(envelope)
    agent.submit(envelope)
    rid = verified.payload.report_id
    agent.officer("alice", "350100123").put(f"/v1/reports/{rid}/manual/SIGNAGE", json={"status": "pass"})
    return rid


def test_the_chain_verifies_and_the_table_refuses_update_and_delete(agent):
    _busy(agent)
    with agent.app.state.sessions() as db:
        check = verify_chain(db)
        entries = list(db.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars())
    assert check.ok and check.entries == len(entries) >= 5
    assert [e.action for e in entries] == ["probe.enroll", "report.accept", "report.duplicate", "login", "manual.set"]
    assert entries[0].prev_hash == "0" * 64 and all(a.hash == b.prev_hash for a, b in zip(entries, entries[1:]))
    assert all(e.at.endswith("+08:00") for e in entries)

    with sqlite3.connect(agent.settings.db_path) as raw:
        for statement in ("UPDATE audit_log SET actor = 'someone' WHERE seq = 2", "DELETE FROM audit_log WHERE seq = 2",
                          "DELETE FROM audit_log"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                raw.execute(statement)
    with agent.app.state.sessions() as db:
        db.delete(db.get(AuditEntry, 3))
        with pytest.raises(Exception, match="append-only"):
            db.commit()
        db.rollback()
        assert verify_chain(db).ok  # the rollback left every entry as it was


def _tampered_copy(source: Path, target: Path, *statements: str) -> Session:
    """A copy of the database with the triggers dropped and ``statements`` run on it, as a tamperer would."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
        dst.execute("DROP TRIGGER audit_log_no_update")
        dst.execute("DROP TRIGGER audit_log_no_delete")
        for statement in statements:
            dst.execute(statement)
    return Session(make_engine(f"sqlite:///{target}"))


def test_verify_chain_finds_edited_removed_and_rehashed_entries(agent, tmp_path):
    _busy(agent)
    source = agent.settings.db_path
    with _tampered_copy(source, tmp_path / "edited.db",
                        "UPDATE audit_log SET detail = '{\"status\":\"fail\"}' WHERE seq = 5") as db:
        assert (verify_chain(db).ok, verify_chain(db).bad_seq) == (False, 5)
    with _tampered_copy(source, tmp_path / "removed.db", "DELETE FROM audit_log WHERE seq = 2") as db:
        check = verify_chain(db)
        assert (check.ok, check.bad_seq) == (False, 3) and "sequence gap" in check.problem
    # Editing an entry and recomputing its own hash still breaks the link to the next one.
    with sqlite3.connect(source) as raw:
        row = raw.execute("SELECT seq, at, actor, action, subject, detail, prev_hash FROM audit_log WHERE seq = 2").fetchone()
    forged = entry_hash(row[6], row[0], row[1], "probe:someone-else", row[3], row[4], row[5])
    with _tampered_copy(source, tmp_path / "rehashed.db",
                        f"UPDATE audit_log SET actor = 'probe:someone-else', hash = '{forged}' WHERE seq = 2") as db:
        check = verify_chain(db)
        assert (check.ok, check.bad_seq) == (False, 3) and "prev_hash" in check.problem
    with agent.app.state.sessions() as db:
        assert verify_chain(db).ok
    broken = runner.invoke(cli, ["verify-log", "--data", str(tmp_path / "other"), "--db",
                                 f"sqlite:///{tmp_path / 'edited.db'}"])
    assert broken.exit_code == 1 and "audit entry 5" in broken.stderr
    intact = runner.invoke(cli, ["verify-log", "--data", str(agent.settings.data_dir)])
    assert intact.exit_code == 0 and "intact" in intact.stdout


def _head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_first_start_creates_the_data_directory_and_a_second_start_changes_nothing(tmp_path):
    settings = Settings(data_dir=tmp_path / "fresh" / "agent")
    assert not settings.data_dir.exists()
    app = create_app(settings)
    assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings.key_path.stat().st_mode) == 0o600 and settings.pub_path.is_file()
    first_key = key_id(load_public_key(settings.pub_path))
    _, pub = make_probe_key(tmp_path)
    with app.state.sessions() as db:
        enroll_probe(db, "p1", pub.read_text())
    app.state.agent.engine.dispose()

    again = create_app(settings)  # idempotent: same key, same data, same schema version
    assert key_id(load_public_key(settings.pub_path)) == first_key
    with again.state.sessions() as db:
        assert db.execute(select(Probe.probe_id)).scalars().all() == ["p1"]
    with sqlite3.connect(settings.db_path) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(_head(),)]
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    settings.pub_path.unlink()  # half a key pair is never silently replaced
    with pytest.raises(KeyFileError, match="must both exist"):
        open_agent(settings)


def test_models_and_migrations_agree(db_url):
    """What ``alembic check`` does: autogenerate against a migrated database finds nothing to change (both dialects)."""
    url = db_url
    cfg = alembic_config(url)
    command.upgrade(cfg, "head")  # the command-line path of migrations/env.py, no service around it
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    command.check(cfg)
    command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    command.upgrade(cfg, "head")
    assert set(inspect(engine).get_table_names()) == {"alembic_version", *Base.metadata.tables}
    engine.dispose()


def test_the_audit_log_is_append_only_on_postgresql(tmp_path, pg_server):
    """The PostgreSQL triggers of migration 0001 refuse UPDATE, DELETE and TRUNCATE; the chain stays whole."""
    agent = make_agent(tmp_path, pg_server.fresh_url())
    try:
        _busy(agent)
        engine = agent.app.state.agent.engine
        for statement in ("UPDATE audit_log SET actor = 'someone' WHERE seq = 2", "DELETE FROM audit_log WHERE seq = 2",
                          "TRUNCATE audit_log"):
            with engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text(statement))
        with agent.app.state.sessions() as db:
            check = verify_chain(db)
            assert check.ok and check.entries == 5
    finally:
        agent.app.state.agent.engine.dispose()


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_cli_init_officers_probes_key_and_export(tmp_path):
    data = ["--data", str(tmp_path / "agent")]
    settings = Settings(data_dir=tmp_path / "agent")
    init = runner.invoke(cli, ["init", *data])
    assert init.exit_code == 0 and "ed25519:" in init.stdout

    secret = tmp_path / "alice.pass"
    secret.write_text("correct horse battery\n")
    secret.chmod(0o644)
    officer = ["add-officer", "alice", "--name", "李丽", "--badge", "350100123", "--password-file", str(secret), *data]
    assert "0600" in _one_line_error(runner.invoke(cli, officer))
    secret.chmod(0o600)
    added = runner.invoke(cli, officer)
    assert added.exit_code == 0 and "correct horse" not in added.output
    assert "already exists" in _one_line_error(runner.invoke(cli, officer))
    prompted = runner.invoke(cli, ["add-officer", "bob", "--name", "王强", "--badge", "350100456", *data],
                             input="typed-secret-1\ntyped-secret-1\n")
    assert prompted.exit_code == 0 and "typed-secret-1" not in prompted.output
    agent = open_agent(settings)
    with agent.sessions() as db:
        assert authenticate(db, "alice", "correct horse battery") is not None
        assert authenticate(db, "bob", "typed-secret-1") is not None
        assert authenticate(db, "bob", "correct horse battery") is None
    agent.engine.dispose()

    priv, pub = make_probe_key(tmp_path)
    enrolled = runner.invoke(cli, ["enroll-probe", str(pub), "--probe-id", PROBE_ID, "--label", "一号", *data])
    assert enrolled.exit_code == 0 and key_id(priv.public_key()) in enrolled.stdout
    assert "already enrolled" in _one_line_error(runner.invoke(cli, ["enroll-probe", str(pub), "--probe-id", "x", *data]))

    shown = runner.invoke(cli, ["key", *data]).stdout.splitlines()
    assert shown[0].startswith("ed25519:") and shown[1] == key_id(load_public_key(settings.pub_path))

    envelope, verified = make_report(priv)
    assert TestClient(create_app(settings)).post("/v1/reports", content=envelope).status_code == 201
    rid = verified.payload.report_id
    for fmt in ("json", "ocsf"):
        out = tmp_path / f"case.{fmt}"
        exported = runner.invoke(cli, ["export", rid, "--format", fmt, "--out", str(out), *data])
        assert exported.exit_code == 0, exported.output
        doc = json.loads(out.read_text())
        assert (doc["case"]["sha256"] if fmt == "json" else doc[0]["unmapped"]["report_sha256"]) == verified.sha256
    assert "no such report" in _one_line_error(runner.invoke(
        cli, ["export", "00000000-0000-4000-8000-000000000000", "--format", "json", "--out", str(tmp_path / "x"), *data]))
    assert "json, ocsf, pdf" in _one_line_error(runner.invoke(
        cli, ["export", rid, "--format", "xml", "--out", str(tmp_path / "x"), *data]))

    revoked = runner.invoke(cli, ["revoke-probe", PROBE_ID, *data])
    assert revoked.exit_code == 0
    agent = open_agent(settings)
    with agent.sessions() as db:
        actions = [e.action for e in db.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()]
        assert verify_chain(db).ok
    agent.engine.dispose()
    assert actions == ["officer.create", "officer.create", "probe.enroll", "report.accept", "export", "export",
                       "probe.revoke"]
