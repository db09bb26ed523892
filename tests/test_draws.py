"""The draw service (agent_api.draws) on SQLite and PostgreSQL, its CLI (``cafe-agent draw``), and the
standalone verifier run alone in a fresh process on what the service published."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from stdnum.cn import uscc
from typer.testing import CliRunner

from agent_api import ApiError
from agent_api import draw_algorithm as algo
from agent_api.app import open_agent
from agent_api.cli import app as cli
from agent_api.db import AuditEntry, Officer
from agent_api.dept_tables import Conflict, Draw, DrawVenue, Inspector, Plan, PlanReduction, Venue
from agent_api.draws import (announcement, bundle_bytes, draw_lines, enter_draw, get_draw, list_draws, prepare_draw,
                             publish_draw, replace_pick, team, verify_bundle_bytes)
from agent_api.settings import Settings
from tests.agentkit import PASSWORD, password_hash

AT = datetime(2026, 2, 20, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
START, END = date(2026, 3, 2), date(2026, 3, 13)
WITNESSES = [("张三", "3141592653"), ("李四", "5897932384")]
ALGORITHM_FILE = Path(algo.__file__)
runner = CliRunner()


@pytest.fixture()
def sessions(tmp_path, db_url) -> sessionmaker[Session]:
    agent = open_agent(Settings(data_dir=tmp_path / "agent", db_url=db_url))
    yield agent.sessions
    agent.engine.dispose()


def code(i: int) -> str:
    base = f"91350105MA{i:07d}"
    return base + uscc.calc_check_digit(base)


def populate(db: Session, jurisdiction: str = "FZ-MW", *, venues: int = 40, blacklisted: int = 4,
             inspectors: int = 6, conflicts: tuple[tuple[int, int], ...] = (), first: int = 0,
             period: str = "year", rounds: int = 6) -> Plan:
    """A registry of ``venues`` open venues (codes ``first``.., the first ``blacklisted`` flagged), ``inspectors``
    qualified officers (badges <jurisdiction>-0..), ``(inspector, venue)`` conflicts, and a plan for 2026."""
    rows = [Venue(credit_code=code(first + i), name=f"网吧{first + i}", address=f"马尾区{i}号", legal_rep="王五",
                  industry="互联网上网服务", jurisdiction=jurisdiction, status="open", code_check="ok",
                  blacklisted=i < blacklisted, blacklist_reason="投诉举报多" if i < blacklisted else None,
                  blacklisted_on=date(2025, 6, 1) if i < blacklisted else None, created_at=AT, updated_at=AT)
            for i in range(venues)]
    people = [Inspector(badge=f"{jurisdiction}-{i}", name=f"民警{i}", sex="male", unit="网安大队", post="民警",
                        jurisdiction=jurisdiction, qualified=True, kind="officer", active=True, created_at=AT,
                        updated_at=AT) for i in range(inspectors)]
    db.add_all(rows + people)
    db.flush()
    db.add_all(Conflict(inspector_id=people[p].id, venue_id=rows[v].id, reason="亲属经营", declared_on=date(2026, 1, 5),
                        created_at=AT) for p, v in conflicts)
    plan = Plan(plan_number=f"{jurisdiction}-2026", name=f"{jurisdiction} 2026年度抽查计划", jurisdiction=jurisdiction,
                authority="福州市公安局马尾分局", year=2026, period=period, rounds=rounds, ratio="0.05",
                blacklist_ratio="0.05", inspectors_per_venue=2, min_pool=4, created_by="cli", created_at=AT)
    db.add(plan)
    db.commit()
    return plan


def approver(db: Session, username: str = "chief") -> Officer:
    officer = Officer(username=username, display_name="赵局长", badge="350100001", password_hash=password_hash(),
                      active=True, created_at=AT)
    db.add(officer)
    db.commit()
    return officer


def prepare(db: Session, plan: Plan, task: str = "MW-2026-01", round_no: int = 1, **kw: Any) -> Draw:
    return prepare_draw(db, plan.id, round_no, task, "2026年第1轮网吧抽查", START, END, "cli", **kw)


def actions(db: Session, subject: str) -> list[str]:
    return list(db.scalars(select(AuditEntry.action).where(AuditEntry.subject == subject).order_by(AuditEntry.seq)))


def refused(call, status: int, *words: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    assert caught.value.status == status, caught.value.message
    assert all(w in caught.value.message for w in words), caught.value.message
    return caught.value


# --- prepare ------------------------------------------------------------------------------------------------------

def test_sizes_for_registries_of_1_19_20_21_60_and_400_venues(sessions):
    expected = {1: 1, 19: 1, 20: 1, 21: 2, 60: 3, 400: 20}
    with sessions() as db:
        first = 0
        for n, size in expected.items():
            plan = populate(db, f"J{n}", venues=n, blacklisted=n // 10, inspectors=4, first=first)
            first += n
            ann = announcement(prepare(db, plan, task=f"J{n}-01"))
            assert ann["sizes"] == {"regular": size, "blacklist": algo.sample_size("0.05", n // 10)}
            assert ann["counts"] == {"venues": n, "blacklist": n // 10, "inspectors": 4, "conflicts": 0}


def test_the_commitment_is_stored_before_any_witness_input_exists(sessions):
    with sessions() as db:
        plan = populate(db)
        draw_id = prepare(db, plan, beacon_name="NIST Randomness Beacon 2.0, pulse at 2026-03-01T10:00Z").id
    with sessions() as db:  # what another reader sees right after the prepare step committed
        draw = db.get(Draw, draw_id)
        assert draw.state == "prepared" and draw.witnesses is None and draw.seed is None
        assert draw.beacon_value is None and draw.drawn_at is None and draw.bundle is None
        assert db.scalar(select(func.count()).select_from(DrawVenue)) == 0
        assert draw.commitment == hashlib.sha256(bytes.fromhex(draw.secret)).hexdigest()
        ann = announcement(draw)
        assert draw.secret not in json.dumps(ann) and ann["commitment"] == draw.commitment
        assert ann["snapshot_sha256"] == algo.snapshot_sha256(draw_lines(draw)) == draw.snapshot_sha256
        entry = db.scalars(select(AuditEntry).where(AuditEntry.subject == "MW-2026-01")).one()
        assert entry.action == "draw.prepare"
        assert json.loads(entry.detail)["announcement"] == ann and "witnesses" not in entry.detail
        refused(lambda: enter_draw(db, draw_id, WITNESSES, None, "cli"), 422, "beacon")
        enter_draw(db, draw_id, WITNESSES, "c0ffee" * 10, "cli")
        assert actions(db, "MW-2026-01") == ["draw.prepare", "draw.enter"]


def test_only_open_venues_and_qualified_active_officers_of_the_jurisdiction_are_in_the_snapshot(sessions):
    with sessions() as db:
        plan = populate(db, venues=5, blacklisted=1, inspectors=5, conflicts=((0, 0),))
        populate(db, "PY", venues=3, inspectors=4, first=100, conflicts=((1, 1),))
        db.get(Venue, 2).status = "closed"
        db.get(Venue, 3).code_check = "confirmed"
        people = list(db.scalars(select(Inspector).where(Inspector.jurisdiction == "FZ-MW").order_by(Inspector.id)))
        people[1].kind, people[2].qualified, people[3].active = "third_party", False, False
        db.commit()
        extra = Inspector(badge="FZ-MW-9", name="民警9", sex="female", unit="派出所", post="民警", jurisdiction="FZ-MW",
                          qualified=True, kind="officer", active=True, created_at=AT, updated_at=AT)
        db.add(extra)
        db.commit()
        refused(lambda: prepare(db, plan), 422, "holds 3, fewer than 4")  # a pool of 3 is refused
        assert db.scalar(select(func.count()).select_from(Draw)) == 0 and actions(db, "MW-2026-01") == []
        db.add(Inspector(badge="FZ-MW-10", name="民警10", sex="male", unit="派出所", post="民警", jurisdiction="FZ-MW",
                         qualified=True, kind="officer", active=True, created_at=AT, updated_at=AT))
        db.commit()
        lines = draw_lines(prepare(db, plan))
    assert lines == sorted(lines)
    assert [line for line in lines if line.startswith("C")] == [f"C\tFZ-MW-0\t{code(0)}"]
    assert [line.split("\t")[1] for line in lines if line.startswith("I")] == ["FZ-MW-0", "FZ-MW-10", "FZ-MW-4",
                                                                              "FZ-MW-9"]
    assert [line for line in lines if line.startswith("V")] == [
        f"V\t{code(0)}\t1\t网吧0", f"V\t{code(2)}\t0\t网吧2", f"V\t{code(3)}\t0\t网吧3", f"V\t{code(4)}\t0\t网吧4"]
    assert not any("民警" in line for line in lines)  # inspectors by badge and unit only


def test_prepare_refuses_what_cannot_be_drawn_and_stores_nothing(sessions):
    with sessions() as db:
        plan = populate(db, venues=6, inspectors=4, conflicts=((0, 2), (1, 2), (2, 2)))
        refused(lambda: prepare(db, plan), 422, code(2), "without a conflict")
        for conflict in db.scalars(select(Conflict)).all()[1:]:
            db.delete(conflict)
        db.get(Venue, 4).code_check = "mismatch"
        db.commit()
        refused(lambda: prepare(db, plan), 422, code(3), "confirmed by a person")
        db.get(Venue, 4).code_check = "confirmed"
        db.commit()
        refused(lambda: prepare_draw(db, plan.id, 1, "T", "任务", END, START, "cli"), 422, "ends before it starts")
        refused(lambda: prepare(db, plan, round_no=7), 422, "round must be 1..6")
        refused(lambda: prepare(db, plan, round_no=0), 422, "round must be 1..6")
        refused(lambda: prepare(db, plan, task="T\t1"), 422, "control character")
        refused(lambda: prepare(db, plan, task="T" * 65), 422, "longer than 64")
        refused(lambda: prepare(db, plan, task="T\ud800"), 422, "control character")  # cannot be UTF-8
        refused(lambda: prepare(db, plan, check_type="random"), 422, "check_type")
        assert db.scalar(select(func.count()).select_from(Draw)) == 0
        db.add(PlanReduction(plan_id=plan.id, round_no=2, kind="joint", reason="参加市局联合抽查", recorded_by="cli",
                             recorded_at=AT))
        db.commit()
        refused(lambda: prepare(db, plan, task="T2", round_no=2), 409, "waived")
        prepare(db, plan, round_no=6)
        refused(lambda: prepare(db, plan, round_no=5), 409, "already used")
        refused(lambda: prepare(db, plan, task="T3", round_no=6), 409, "already drawn")
        monthly = populate(db, "PY", venues=2, inspectors=4, first=100, period="month", rounds=3)
        refused(lambda: prepare(db, monthly, task="PY-37", round_no=37), 422, "1..36")
        assert prepare(db, monthly, task="PY-36", round_no=36).state == "prepared"
        for venue in db.scalars(select(Venue).where(Venue.jurisdiction == "PY")):
            venue.status = "revoked"
        db.commit()
        refused(lambda: prepare(db, monthly, task="PY-35", round_no=35), 422, "no open venue")
        assert actions(db, "T2") == actions(db, "T3") == actions(db, "PY-35") == []


# --- enter, publish, replace --------------------------------------------------------------------------------------

def _drawn(db: Session, **kw: Any) -> Draw:
    plan = populate(db, venues=60, blacklisted=20, inspectors=6, conflicts=((0, 0), (1, 0), (2, 5)), **kw)
    return enter_draw(db, prepare(db, plan).id, WITNESSES, None, "cli")


def test_enter_draws_distinct_unconflicted_teams_and_publish_gives_a_verifiable_bundle(sessions):
    with sessions() as db:
        plan = populate(db, venues=60, blacklisted=20, inspectors=6, conflicts=((0, 0), (1, 0), (2, 5)))
        draw_id = prepare(db, plan).id
        refused(lambda: enter_draw(db, draw_id, [("张三", "1234567890123456789")], None, "cli"), 422, "19 dice")
        refused(lambda: enter_draw(db, draw_id, [("张三", "１２３４５６７８９０１２３４５６７８９０")], None, "cli"), 422, "0-9")
        refused(lambda: enter_draw(db, draw_id, WITNESSES, "abc", "cli"), 422, "no beacon was named")
        refused(lambda: publish_draw(db, draw_id, "cli"), 409, "only a drawn task")
        draw = enter_draw(db, draw_id, [(" 张三 ", " 3141592653 "), ("李四", "5897932384")], None, "cli")
        assert draw.state == "drawn" and json.loads(draw.witnesses)[0] == {"name": "张三", "digits": "3141592653"}
        refused(lambda: enter_draw(db, draw_id, WITNESSES, None, "cli"), 409, "already drawn")
        refused(lambda: bundle_bytes(draw), 404, "not published")
        picks = sorted(draw.venues, key=lambda p: p.id)
        # 3 regular picks, then the blacklist pick unless it was drawn as regular already
        assert len(picks) in (3, 4) and [p.kind for p in picks] == ["regular"] * 3 + ["blacklist"] * (len(picks) - 3)
        conflicts = {("FZ-MW-0", code(0)), ("FZ-MW-1", code(0)), ("FZ-MW-2", code(5))}
        for pick in picks:
            badges = team(pick)
            assert len(badges) == len(set(badges)) == 2
            assert not any((b, pick.venue.credit_code) in conflicts for b in badges)
        draw = publish_draw(db, draw_id, "cli")
        refused(lambda: publish_draw(db, draw_id, "cli"), 409, "published")
        check = verify_bundle_bytes(bundle_bytes(draw))
        assert check.ok, check.problems
        assert [(f["credit_code"], f["kind"], f["position"], f["inspectors"]) for f in check.final] == [
            (p.venue.credit_code, p.kind, p.position, team(p)) for p in picks]
        bundle = json.loads(bundle_bytes(draw))
        assert bundle["secret"] == draw.secret and bundle["seed"] == draw.seed
        assert all(p.ticket == dict(bundle["tickets"]["venue" if p.kind == "regular" else "blacklist"])[
            p.venue.credit_code] for p in picks)
        assert actions(db, "MW-2026-01") == ["draw.prepare", "draw.enter", "draw.publish"]
        assert get_draw(db, "MW-2026-01").id == draw_id and [d.id for d in list_draws(db, plan.id)] == [draw_id]
        refused(lambda: get_draw(db, "nope"), 404)
        assert not verify_bundle_bytes(b"\xff\xfe").ok and not verify_bundle_bytes(b"[1, 2]").ok


def test_a_pick_changes_only_with_an_approval_to_the_next_ticket_of_its_stream(sessions):
    with sessions() as db:
        draw = _drawn(db)
        chief = approver(db)
        first, second = sorted(draw.venues, key=lambda p: p.id)[:2]
        before = {p.venue.credit_code for p in draw.venues}
        gone = first.venue.credit_code
        refused(lambda: replace_pick(db, draw.id, venue_code=gone, approver=chief, reason="  ", actor="cli"), 422,
                "reason")
        refused(lambda: replace_pick(db, draw.id, venue_code=code(999), approver=chief, reason="停业", actor="cli"),
                409, "not an active pick")
        refused(lambda: replace_pick(db, draw.id, venue_code="\udcff", approver=chief, reason="停业", actor="cli"),
                422, "credit code")
        refused(lambda: get_draw(db, "\udcff"), 404)
        refused(lambda: replace_pick(db, draw.id, venue_code=gone, inspector_badge="FZ-MW-99", approver=chief,
                                     reason="病假", actor="cli"), 409, "not on the team")
        draw = replace_pick(db, draw.id, venue_code=gone, approver=chief, reason="场所已停业", actor="cli")
        draw = publish_draw(db, draw.id, "cli")
        bundle = json.loads(bundle_bytes(draw))
        venue_stream = [key for key, _ticket in bundle["tickets"]["venue"]]
        new = next(c for c in venue_stream[3:] if c not in before)  # the next ticket never drawn
        assert bundle["replacements"][0]["replacement"] == new
        rows = {p.venue.credit_code: p for p in draw.venues}
        assert rows[gone].active is False and rows[new].active and rows[new].kind == "regular"
        assert rows[new].position == venue_stream.index(new) + 1
        refused(lambda: replace_pick(db, draw.id, venue_code=gone, approver=chief, reason="再换", actor="cli"), 409,
                "not an active pick")
        # After publication: an inspector of the second pick, and the published bundle is rebuilt with it.
        old = team(second)[0]
        draw = replace_pick(db, draw.id, venue_code=second.venue.credit_code, inspector_badge=old, approver=chief,
                            reason="民警病假", actor="cli")
        bundle = json.loads(bundle_bytes(draw))
        assert algo.verify_bundle(bundle).ok
        entry = bundle["replacements"][1]
        assert entry["kind"] == "inspector" and entry["inspector"] == old and entry["reason"] == "民警病假"
        assert entry["approved_by"] == {"badge": "350100001"} and "chief" not in bundle_bytes(draw).decode()
        assert team(db.get(DrawVenue, second.id))[0] == entry["replacement"] != old
        assert [p["credit_code"] for p in bundle["final"]] == [
            p.venue.credit_code for p in sorted(draw.venues, key=lambda p: p.id) if p.active]
        audit = [json.loads(e.detail)
                 for e in db.scalars(select(AuditEntry).where(AuditEntry.action == "draw.replace"))]
        assert [a["approved_by"] for a in audit] == [{"name": "赵局长", "badge": "350100001", "username": "chief"}] * 2
        assert [a["reason"] for a in audit] == ["场所已停业", "民警病假"] and all(a["at"] for a in audit)


def test_uploaded_bundles_are_bounded(monkeypatch):
    monkeypatch.setattr("agent_api.draws.MAX_BUNDLE_UPLOAD", 100)
    check = verify_bundle_bytes(b" " * 101)
    assert not check.ok and "larger than 100 bytes" in check.problems[0]


# --- the verifier alone, in a fresh process -----------------------------------------------------------------------

def _python() -> str:
    """Debian's python3 if there is one: outside the project's virtualenv, with nothing installed."""
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


TAMPER = {
    "one witness digit": lambda b: b["inputs"]["witnesses"][0].update(digits="4" + b["inputs"]["witnesses"][0][
        "digits"][1:]),
    "one snapshot line": lambda b: b["snapshot"].__setitem__(-1, b["snapshot"][-1] + "号"),
    "the secret": lambda b: b.update(secret=hashlib.sha256(b"another").hexdigest()),
    "the algorithm version": lambda b: b["announcement"].update(algorithm="cafe-draw/2"),
}


def test_the_standalone_verifier_alone_in_a_fresh_process_re_derives_the_picks(sessions, tmp_path):
    with sessions() as db:
        draw = _drawn(db)
        replace_pick(db, draw.id, venue_code=sorted(draw.venues, key=lambda p: p.id)[0].venue.credit_code,
                     approver=approver(db), reason="场所已停业", actor="cli")
        data = bundle_bytes(publish_draw(db, draw.id, "cli"))
        final = [(p.venue.credit_code, team(p)) for p in sorted(draw.venues, key=lambda p: p.id) if p.active]
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(ALGORITHM_FILE, alone / "draw_algorithm.py")
    (alone / "bundle.json").write_bytes(data)

    def run(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([_python(), "-I", "draw_algorithm.py", name], cwd=alone, capture_output=True, text=True,
                              timeout=60, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})

    proc = run("bundle.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = [line.split() for line in proc.stdout.splitlines() if line.startswith("  regular") or
             line.startswith("  blacklist")]
    assert [(words[2], [b.rstrip(",") for b in words[-2:]]) for words in shown] == final
    assert "通过" in proc.stdout and sorted(p.name for p in alone.iterdir()) == ["bundle.json", "draw_algorithm.py"]
    assert runner.invoke(cli, ["draw", "verify", str(alone / "bundle.json")]).exit_code == 0
    for name, change in TAMPER.items():
        bundle = json.loads(data)
        change(bundle)
        (alone / "changed.json").write_bytes(algo.bundle_json(bundle))
        proc = run("changed.json")
        assert proc.returncode == 1 and "FAILED" in proc.stdout and "问题 / problem:" in proc.stdout, name
        result = runner.invoke(cli, ["draw", "verify", str(alone / "changed.json")])
        assert result.exit_code == 1 and "FAILED" in result.output, name
    (alone / "junk.json").write_bytes(data[:1000])
    assert run("junk.json").returncode == 2
    assert runner.invoke(cli, ["draw", "verify", str(alone / "junk.json")]).exit_code == 2


# --- cafe-agent draw ----------------------------------------------------------------------------------------------

def test_the_ceremony_from_the_command_line(tmp_path):
    data = tmp_path / "agent"
    agent = open_agent(Settings(data_dir=data))
    with agent.sessions() as db:
        populate(db, venues=25, blacklisted=5, inspectors=5)
        approver(db)
    agent.engine.dispose()
    where = ["--data", str(data)]

    def ok(*args: str) -> str:
        result = runner.invoke(cli, ["draw", *args, *where])
        assert result.exit_code == 0, result.output
        return result.output

    out = ok("prepare", "--plan", "FZ-MW-2026", "--round", "1", "--task", "MW-2026-01", "--name", "第1轮",
             "--start", "2026-03-02", "--end", "2026-03-13")
    assert "prepared" in out and "commitment" in out
    out = ok("enter", "MW-2026-01", "--witness", "张三:3141592653", "--witness", "李四：5897932384")
    assert "drawn" in out and out.count("检查人员 / inspectors:") in (2, 3) and "张三 (3141592653)" in out
    code_drawn = next(line.split()[2] for line in out.splitlines() if line.startswith("  regular"))
    ok("publish", "MW-2026-01")
    secret, wrong = tmp_path / "chief.pass", tmp_path / "wrong.pass"
    for path, text in ((secret, PASSWORD), (wrong, "not it")):
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(text + "\n")
    result = runner.invoke(cli, ["draw", "replace", "MW-2026-01", "--venue", code_drawn, "--approver", "chief",
                                 "--reason", "停业", "--approver-password-file", str(wrong), *where])
    assert result.exit_code == 1 and "wrong approver" in result.output
    out = ok("replace", "MW-2026-01", "--venue", code_drawn, "--approver", "chief", "--reason", "场所已停业",
             "--approver-password-file", str(secret))
    assert "withdrawn" in out
    shown = ok("show", "MW-2026-01")
    assert code_drawn in shown
    active = next(line for line in shown.splitlines() if line.startswith("  ") and "withdrawn" not in line)
    badge = active.split()[-1]  # the second inspector of an active pick; the password asked, never echoed
    result = runner.invoke(cli, ["draw", "replace", "MW-2026-01", "--venue", active.split()[2], "--inspector", badge,
                                 "--approver", "chief", "--reason", "民警病假", *where], input=PASSWORD + "\n")
    assert result.exit_code == 0 and PASSWORD not in result.output, result.output
    assert badge not in next(line for line in result.output.splitlines() if active.split()[2] in line)
    ok("bundle", "MW-2026-01", "--out", str(tmp_path / "bundle.json"))
    result = runner.invoke(cli, ["draw", "verify", str(tmp_path / "bundle.json")])  # no data directory needed
    assert result.exit_code == 0 and "通过" in result.output
    result = runner.invoke(cli, ["draw", "enter", "MW-2026-01", "--witness", "no-colon", *where])
    assert result.exit_code == 1 and "NAME:DIGITS" in result.output
    result = runner.invoke(cli, ["draw", "show", "MW-2026-99", *where])
    assert result.exit_code == 1 and "no such task" in result.output
