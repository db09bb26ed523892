"""Results of drawn venues: wordings, report links, deadlines, publication, blacklist, changes and deadline flags."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from stdnum.cn import uscc
from typer.testing import CliRunner

from agent_api.app import open_agent
from agent_api.audit import CLI, now, verify_chain
from agent_api.cli import app as cli
from agent_api.db import AuditEntry, Probe, Report
from agent_api.dept_rules import load_dept_rules
from agent_api.dept_tables import CreditEvent, Draw, DrawVenue, Plan, ResultChange, Venue
from agent_api.plans import create_plan
from agent_api.results import change_result, deadline_items, publish_results, record_result, results_for_draw
from agent_api.settings import Settings
from probe.rules import RulesError, rules_directory
from tests import test_plans
from tests.test_plans import _refused, add_draw

db = test_plans.db  # the session fixture: a fresh agent database, SQLite and PostgreSQL

AT = datetime(2026, 1, 5, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def credit_code(n: int) -> str:
    """A well-formed unified social credit code with a matching check character."""
    body = f"91350105MA2Y{n:05d}"
    return body + uscc.calc_check_digit(body)


def add_venue(db, n: int, name: str, *, site_id: str | None = None, blacklisted: bool = False) -> Venue:
    venue = Venue(credit_code=credit_code(n), name=name, address=f"马尾区江滨东大道{n}号", legal_rep=f"法人{n}",
                  industry="互联网上网服务", jurisdiction="FZ-MW", status="open", site_id=site_id, code_check="ok",
                  blacklisted=blacklisted, blacklist_reason="投诉举报多" if blacklisted else None,
                  blacklisted_on=date(2025, 12, 1) if blacklisted else None, created_at=AT, updated_at=AT)
    db.add(venue)
    db.commit()
    return venue


def add_pick(db, draw: Draw, venue: Venue, *, active: bool = True) -> DrawVenue:
    pick = DrawVenue(draw_id=draw.id, venue_id=venue.id, kind="blacklist" if venue.blacklisted else "regular",
                     position=len(draw.venues), ticket=f"{venue.id:064x}", inspectors='["350101", "350102"]',
                     active=active)
    db.add(pick)
    db.commit()
    db.expire(draw, ["venues"])
    return pick


def add_report(db, report_id: str, site_id: str, name: str) -> Report:
    """A stored probe report of ``site_id`` (only the columns the link needs carry meaning)."""
    if db.scalar(select(Probe).where(Probe.key_id == "k" * 64)) is None:
        db.add(Probe(probe_id="probe-test", key_id="k" * 64, public_key="ed25519:x", enrolled_at=AT))
    report = Report(report_id=report_id, sha256="3" * 64, probe_key_id="k" * 64, envelope=b"{}", payload=b"{}",
                    venue_id=site_id, venue_name=name, started_at=AT, ended_at=AT, received_at=AT, receipt=b"{}")
    db.add(report)
    db.commit()
    return report


def drawn_task(db, *, state: str = "drawn", round_no: int = 1, check_start: date = date(2026, 2, 2),
               check_end: date = date(2026, 2, 6)) -> Draw:
    plan = db.scalar(select(Plan).where(Plan.plan_number == "FZ-MW-2026")) or create_plan(db, "FZ-MW", 2026, CLI)
    return add_draw(db, plan, round_no, state, check_start=check_start, check_end=check_end)


def test_record_accepts_any_wording_and_refuses_unknown_types(db):
    draw = drawn_task(db)
    pick = add_pick(db, draw, add_venue(db, 1, "星空网咖"))
    result = record_result(db, pick.id, "发现问题经责令已改正", date(2026, 2, 6), "当场整改实名登记", CLI)
    # Check ended Fri 2/6: the 20th working day after it is Thu 3/12 (counted in tests/test_workdays.py).
    assert (result.result_type, result.deadline, result.deadline_estimated) == ("corrected", date(2026, 3, 12), False)
    message = _refused(422, "unknown_result_type", record_result, db, pick.id, "查无此类", date(2026, 2, 6), "", CLI)
    assert "no_problem（未发现问题）" in message and "pending_followup（发现问题待后续处理）" in message
    _refused(422, "before_check", record_result, db, pick.id, "no_problem", date(2026, 2, 1), "", CLI)
    _refused(422, "control_characters", record_result, db, pick.id, "no_problem", date(2026, 2, 6), "a\nb", CLI)
    again = record_result(db, pick.id, "未发现问题", date(2026, 2, 9), "复核", CLI)
    assert again.id == result.id and (again.result_type, again.deadline) == ("no_problem", date(2026, 3, 13))
    entries = list(db.scalars(select(AuditEntry).where(AuditEntry.action == "result.record")))
    assert [e.subject for e in entries] == [f"result:FZ-MW-2026-R01/{credit_code(1)}"] * 2
    assert json.loads(entries[1].detail)["result_type"] == ["corrected", "no_problem"]
    assert json.loads(entries[1].detail)["deadline"] == ["2026-03-12", "2026-03-13"]

    withdrawn = add_pick(db, draw, add_venue(db, 2, "蓝海网吧"), active=False)
    _refused(409, "pick_withdrawn", record_result, db, withdrawn.id, "no_problem", date(2026, 2, 6), "", CLI)
    prepared = drawn_task(db, state="prepared", round_no=2)
    waiting = add_pick(db, prepared, add_venue(db, 3, "极速网咖"))
    _refused(409, "not_drawn", record_result, db, waiting.id, "no_problem", date(2026, 2, 6), "", CLI)
    _refused(404, "unknown_pick", record_result, db, 9999, "no_problem", date(2026, 2, 6), "", CLI)


def test_report_link_must_be_of_the_drawn_venue(db):
    draw = drawn_task(db)
    pick = add_pick(db, draw, add_venue(db, 1, "星空网咖", site_id="FZ-MW-0001"))
    add_report(db, "00000000-0000-4000-8000-000000000001", "FZ-MW-0001", "星空网咖")
    add_report(db, "00000000-0000-4000-8000-000000000002", "FZ-MW-0002", "蓝海网吧")
    message = _refused(422, "report_venue_mismatch", record_result, db, pick.id, "no_problem", date(2026, 2, 6), "",
                       CLI, report_id="00000000-0000-4000-8000-000000000002")
    assert "FZ-MW-0002" in message and "FZ-MW-0001" in message and "蓝海网吧" in message
    _refused(422, "unknown_report", record_result, db, pick.id, "no_problem", date(2026, 2, 6), "", CLI,
             report_id="00000000-0000-4000-8000-000000000009")
    result = record_result(db, pick.id, "no_problem", date(2026, 2, 6), "", CLI,
                           report_id="00000000-0000-4000-8000-000000000001")
    assert result.report_id == "00000000-0000-4000-8000-000000000001"
    # A venue without a site id in the registry cannot be matched to any report.
    other = add_pick(db, draw, add_venue(db, 2, "蓝海网吧"))
    assert "未登记场所编号" in _refused(422, "report_venue_mismatch", record_result, db, other.id, "no_problem",
                                       date(2026, 2, 6), "", CLI, report_id="00000000-0000-4000-8000-000000000002")


def test_a_december_check_gets_its_deadline_as_an_estimate(db):
    draw = drawn_task(db, check_start=date(2026, 12, 7), check_end=date(2026, 12, 10))
    pick = add_pick(db, draw, add_venue(db, 1, "星空网咖"))
    # No result yet: the deadline counts from the task's end. 2027 has no confirmed
    # schedule: 1/1/2027 is counted as a plain Friday (tests/test_workdays.py).
    [item] = deadline_items(db, date(2026, 12, 1))
    assert (item.draw_venue_id, item.from_check_end, item.deadline, item.estimated) == (pick.id, True,
                                                                                        date(2027, 1, 7), True)


def test_a_check_cannot_be_completed_in_the_future(db):
    today = now(db).date()
    draw = drawn_task(db, check_start=today - timedelta(days=3), check_end=today + timedelta(days=10))
    pick = add_pick(db, draw, add_venue(db, 1, "星空网咖"))
    _refused(422, "completed_in_future", record_result, db, pick.id, "no_problem", today + timedelta(days=1), "", CLI)
    assert record_result(db, pick.id, "no_problem", today, "", CLI).completed_on == today


def test_publish_blacklists_and_a_followup_change_lifts_it(db):
    draw = drawn_task(db)
    clean, followup, fixed = (add_venue(db, 1, "星空网咖"), add_venue(db, 2, "蓝海网吧"), add_venue(db, 3, "极速网咖"))
    listed = add_venue(db, 4, "老友网吧", blacklisted=True)
    picks = [add_pick(db, draw, venue) for venue in (clean, followup, fixed, listed)]
    for pick, kind in zip(picks, ("no_problem", "发现问题待后续处理", "corrected", "pending_followup")):
        record_result(db, pick.id, kind, date(2026, 2, 6), "", CLI)
    unpublished = picks[0].result
    _refused(409, "not_published", change_result, db, unpublished.id, "corrected", "x", CLI)
    published = publish_results(db, draw.id, CLI)
    assert len(published) == 4 and all(r.published_at is not None for r in published)
    _refused(409, "nothing_to_publish", publish_results, db, draw.id, CLI)
    _refused(409, "published", record_result, db, picks[0].id, "corrected", date(2026, 2, 6), "", CLI)
    today = now(db).date()

    events = list(db.scalars(select(CreditEvent).order_by(CreditEvent.id)))
    assert [(e.venue_id, e.kind, e.result_type) for e in events] == [
        (clean.id, "result", "no_problem"), (followup.id, "result", "pending_followup"),
        (fixed.id, "result", "corrected"), (listed.id, "result", "pending_followup"),
        (followup.id, "blacklist_add", "pending_followup")]
    assert events[-1].task_number == "FZ-MW-2026-R01"
    db.refresh(followup)
    assert (followup.blacklisted, followup.blacklist_reason, followup.blacklisted_on) == \
        (True, "抽查发现违法违规问题，待后续处理", today)

    _refused(422, "change_not_allowed", change_result, db, picks[0].result.id, "corrected", "复查", CLI)
    _refused(422, "change_not_allowed", change_result, db, picks[2].result.id, "no_problem", "复查", CLI)
    _refused(422, "missing_field", change_result, db, picks[1].result.id, "no_problem", " ", CLI)
    _refused(422, "unknown_result_type", change_result, db, picks[1].result.id, "没问题了", "复查", CLI)
    reason = "经进一步调查，上网人员身份信息系登记系统故障所致，不存在违法行为"
    changed = change_result(db, picks[1].result.id, "未发现问题", reason, CLI)
    assert changed.result_type == "no_problem"
    db.refresh(followup)
    assert (followup.blacklisted, followup.blacklist_reason) == (False, None)
    change = db.scalar(select(ResultChange))
    assert (change.from_type, change.to_type, change.reason, change.changed_by) == \
        ("pending_followup", "no_problem", reason, CLI)
    kinds = [(e.venue_id, e.kind) for e in db.scalars(select(CreditEvent).order_by(CreditEvent.id))][5:]
    assert kinds == [(followup.id, "result_changed"), (followup.id, "blacklist_remove")]
    # Blacklisted before this task for another reason: the change does not take it off.
    change_result(db, picks[3].result.id, "no_problem", reason, CLI)
    db.refresh(listed)
    assert listed.blacklisted and listed.blacklist_reason == "投诉举报多"
    assert [r.id for r in results_for_draw(db, draw.id)] == [p.result.id for p in picks]
    actions = [e.action for e in db.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
    assert actions.count("result.publish") == 4 and actions.count("result.change") == 2
    assert "venue.blacklist" in actions and "venue.unblacklist" in actions
    assert verify_chain(db).ok


def test_publish_only_the_chosen_results(db):
    draw = drawn_task(db)
    picks = [add_pick(db, draw, add_venue(db, n, f"网吧{n}")) for n in (1, 2)]
    results = [record_result(db, p.id, "no_problem", date(2026, 2, 6), "", CLI) for p in picks]
    _refused(422, "not_publishable", publish_results, db, draw.id, CLI, [results[0].id, 777])
    assert [r.id for r in publish_results(db, draw.id, CLI, [results[1].id])] == [results[1].id]
    assert results[0].published_at is None
    _refused(422, "not_publishable", publish_results, db, draw.id, CLI, [results[1].id])


def test_deadline_items_flag_overdue_and_due_soon(db):
    draw = drawn_task(db)  # check ended Fri 2026-02-06: deadline Thu 3/12 for a venue without a result
    waiting, late, done = (add_pick(db, draw, add_venue(db, n, f"网吧{n}")) for n in (1, 2, 3))
    add_pick(db, draw, add_venue(db, 4, "被替换网吧"), active=False)
    prepared = drawn_task(db, state="prepared", round_no=2)
    add_pick(db, prepared, add_venue(db, 5, "未抽取网吧"))
    # Completed Fri 2/13: Sat 2/14 is 1, Tue 2/24..Fri 2/27 2-5, Sat 2/28 6, 3/2..3/6 7-11, 3/9..3/13 12-16,
    # Mon 3/16..Thu 3/19 17-20: due Thu 3/19.
    record_result(db, late.id, "no_problem", date(2026, 2, 13), "", CLI)
    record_result(db, done.id, "no_problem", date(2026, 2, 6), "", CLI)
    publish_results(db, draw.id, CLI, [done.result.id])

    def flags(today: date) -> list[tuple[str, str, date, int]]:
        return [(i.venue_name, i.status, i.deadline, i.working_days_left) for i in deadline_items(db, today)]

    # On Fri 3/6: (3/6, 3/12] holds Mon-Thu, 4 working days, at most 5: due soon; (3/6, 3/19] holds 9.
    assert flags(date(2026, 3, 6)) == [("网吧1", "due_soon", date(2026, 3, 12), 4),
                                       ("网吧2", "open", date(2026, 3, 19), 9),
                                       ("网吧3", "published", date(2026, 3, 12), 4)]
    # On Fri 3/13 the first is one working day late; the second has Mon-Thu left.
    assert flags(date(2026, 3, 13)) == [("网吧1", "overdue", date(2026, 3, 12), -1),
                                        ("网吧2", "due_soon", date(2026, 3, 19), 4),
                                        ("网吧3", "published", date(2026, 3, 12), -1)]
    first = deadline_items(db, date(2026, 3, 13))[0]
    assert (first.from_check_end, first.counted_from, first.result_id) == (True, date(2026, 2, 6), None)
    assert deadline_items(db, date(2026, 3, 13))[1].counted_from == date(2026, 2, 13)


def test_deadline_items_mark_estimates(db):
    draw = drawn_task(db, check_start=date(2026, 12, 7), check_end=date(2026, 12, 10))
    add_pick(db, draw, add_venue(db, 1, "星空网咖"))
    item = deadline_items(db, date(2026, 12, 20))[0]
    assert (item.deadline, item.estimated, item.status) == (date(2027, 1, 7), True, "open")


def test_results_yaml_codes_must_exist(tmp_path):
    root = tmp_path / "rules"
    shutil.copytree(rules_directory(None), root, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    results = root / "department" / "results.yaml"
    text = results.read_text(encoding="utf-8").replace("clears: [no_problem]", "clears: [all_clear]")
    results.write_text(text.replace("pending_followup: [no_problem]", "pending_followup: [pending_followup]"),
                       encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_dept_rules(root / "department")
    assert caught.value.problems == [
        "department/results.yaml: clears.0: 'all_clear' is not a code in result_types.yaml",
        "department/results.yaml: change_allowed.pending_followup.0: a change to the same type"]


def test_cli_record_publish_change_and_deadlines(tmp_path, db_url):
    agent = open_agent(Settings(data_dir=tmp_path / "agent", db_url=db_url))
    with agent.sessions() as session:
        draw = drawn_task(session)
        add_pick(session, draw, add_venue(session, 1, "星空网咖"))
        add_pick(session, draw, add_venue(session, 2, "蓝海网吧"))
    agent.engine.dispose()
    runner = CliRunner()
    opts = ["--data", str(tmp_path / "agent"), "--db", db_url]
    task = "FZ-MW-2026-R01"

    def run(*args: str):
        return runner.invoke(cli, [*args, *opts])

    recorded = run("result", "record", task, credit_code(1), "--type", "发现问题待后续处理", "--completed", "2026-02-06",
                   "--remark", "实名登记系统异常")
    assert recorded.exit_code == 0, recorded.output
    assert "pending_followup" in recorded.stdout and "2026-03-12" in recorded.stdout
    unknown = run("result", "record", task, credit_code(1), "--type", "好", "--completed", "2026-02-06")
    assert unknown.exit_code == 1 and "no_problem（未发现问题）" in unknown.stderr
    stranger = run("result", "record", task, credit_code(9), "--type", "no_problem", "--completed", "2026-02-06")
    assert stranger.exit_code == 1 and "not a drawn venue" in stranger.stderr
    deadlines = run("result", "deadlines", "--today", "2026-03-09")
    assert deadlines.exit_code == 0, deadlines.output
    lines = deadlines.stdout.splitlines()[1:]
    assert len(lines) == 2 and all(line.startswith("即将到期 / due soon\t2026-03-12\t3\t") for line in lines)
    published = run("result", "publish", task)
    assert published.exit_code == 0 and "1 条结果" in published.stdout
    changed = run("result", "change", task, credit_code(1), "--to", "no_problem", "--reason", "经调查系设备故障")
    assert changed.exit_code == 0, changed.output
    refused = run("result", "change", task, credit_code(1), "--to", "corrected", "--reason", "再改")
    assert refused.exit_code == 1 and "cannot become corrected" in refused.stderr
    later = run("result", "deadlines", "--today", "2026-03-13").stdout.splitlines()[1:]
    assert [line.split("\t")[0] for line in later] == ["逾期 / overdue", "已公示 / published"]
