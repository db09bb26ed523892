"""Plans: defaults per jurisdiction from rules/department/plans.yaml, the floors, waived rounds, the schedule."""

from __future__ import annotations

import shutil
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from agent_api import ApiError
from agent_api.app import open_agent
from agent_api.audit import CLI, verify_chain
from agent_api.cli import app as cli
from agent_api.db import AuditEntry
from agent_api.dept_rules import load_dept_rules
from agent_api.dept_tables import Draw, Plan
from agent_api.plans import create_plan, get_plan, list_plans, plan_summary, reduce_round, round_schedule
from agent_api.settings import Settings
from probe.rules import RulesError, rules_directory

AT = datetime(2026, 1, 5, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture
def db(tmp_path, db_url):
    """A session on a fresh, migrated agent database (SQLite and PostgreSQL)."""
    agent = open_agent(Settings(data_dir=tmp_path / "agent", db_url=db_url))
    with agent.sessions() as session:
        yield session
    agent.engine.dispose()


def add_draw(db, plan: Plan, round_no: int, state: str, *, check_start: date = date(2026, 3, 2),
             check_end: date = date(2026, 3, 13), check_type: str = "undirected") -> Draw:
    """A draw row with its NOT NULL columns filled plainly (the draw procedure itself is tested elsewhere)."""
    draw = Draw(plan_id=plan.id, round_no=round_no, task_number=f"{plan.plan_number}-R{round_no:02d}",
                task_name=f"{plan.name}第{round_no}轮", check_type=check_type, authority=plan.authority,
                check_start=check_start, check_end=check_end, state=state, algorithm="cafe-draw/1",
                snapshot="", snapshot_sha256="0" * 64, announcement="{}", commitment="1" * 64, secret="2" * 64,
                prepared_by=CLI, prepared_at=AT)
    db.add(draw)
    db.commit()
    db.expire(plan, ["draws"])
    return draw


def _refused(status: int, code: str, call, *args, **kwargs) -> str:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.message
    return caught.value.message


def test_defaults_come_from_the_jurisdictions_rules(db):
    mawei = create_plan(db, "FZ-MW", 2026, CLI)
    assert (mawei.plan_number, mawei.period, mawei.rounds, mawei.ratio, mawei.blacklist_ratio) == \
        ("FZ-MW-2026", "year", 6, "0.05", "0.05")
    assert (mawei.inspectors_per_venue, mawei.min_pool, mawei.authority) == (2, 4, "福州市公安局马尾分局")
    assert mawei.name.startswith("福州市马尾区2026年度")
    puyang = create_plan(db, "PY", 2026, CLI, ratio="0.10")
    assert (puyang.period, puyang.rounds, puyang.ratio, puyang.authority) == ("month", 3, "0.10", "濮阳县公安局")
    other = create_plan(db, "XM-SM", 2026, CLI, authority="厦门市公安局思明分局", plan_number="思明-2026-网吧")
    assert (other.period, other.rounds, other.name) == ("year", 6, "XM-SM2026年度“双随机、一公开”抽查工作计划")
    # The default entry has no authority: a plan must name one.
    assert "authority" in _refused(422, "missing_field", create_plan, db, "XM-HL", 2026, CLI)
    _refused(409, "plan_exists", create_plan, db, "FZ-MW", 2026, CLI, plan_number="other")
    _refused(409, "plan_exists", create_plan, db, "FZ-CL", 2026, CLI, authority="x", plan_number="FZ-MW-2026")
    assert [p.plan_number for p in list_plans(db, 2026)] == ["FZ-MW-2026", "PY-2026", "思明-2026-网吧"]
    assert get_plan(db, "PY-2026").id == puyang.id
    _refused(404, "unknown_plan", get_plan, db, "PY-2025")
    entries = list(db.scalars(select(AuditEntry).where(AuditEntry.action == "plan.create")))
    assert [e.subject for e in entries] == ["plan:FZ-MW-2026", "plan:PY-2026", "plan:思明-2026-网吧"]
    assert verify_chain(db).ok


def test_values_below_the_floors_are_refused_with_the_reason(db):
    assert "0.04" in _refused(422, "below_minimum", create_plan, db, "FZ-MW", 2026, CLI, ratio="0.04")
    assert "0.05" in _refused(422, "below_minimum", create_plan, db, "FZ-MW", 2026, CLI, blacklist_ratio="0.049")
    assert "1 低于下限 2" in _refused(422, "below_minimum", create_plan, db, "FZ-MW", 2026, CLI,
                                     inspectors_per_venue=1)
    assert "3 低于下限 4" in _refused(422, "below_minimum", create_plan, db, "FZ-MW", 2026, CLI, min_pool=3)
    for bad in ("0.5.1", "5%", "1.01", "0", "-0.1", "0.05e0", " "):
        _refused(422, "bad_ratio", create_plan, db, "FZ-MW", 2026, CLI, ratio=bad)
    _refused(422, "pool_too_small", create_plan, db, "FZ-MW", 2026, CLI, inspectors_per_venue=5)
    _refused(422, "bad_rounds", create_plan, db, "FZ-MW", 2026, CLI, period="month", rounds=32)
    _refused(422, "bad_rounds", create_plan, db, "FZ-MW", 2026, CLI, rounds=0)
    _refused(422, "bad_period", create_plan, db, "FZ-MW", 2026, CLI, period="week")
    _refused(422, "control_characters", create_plan, db, "FZ-MW", 2026, CLI, name="计划\t一")
    _refused(422, "bad_jurisdiction", create_plan, db, "default", 2026, CLI, authority="x")
    assert db.scalar(select(func.count()).select_from(Plan)) == 0
    # Exactly at the floors, and an exact decimal above them, are fine.
    plan = create_plan(db, "FZ-MW", 2026, CLI, ratio="0.050", inspectors_per_venue=2, min_pool=4, rounds=12)
    assert (plan.ratio, plan.rounds) == ("0.050", 12)


def test_yearly_schedule_shows_published_missing_overdue_due_waived_and_upcoming(db):
    plan = create_plan(db, "FZ-MW", 2026, CLI)
    add_draw(db, plan, 1, "published")
    add_draw(db, plan, 3, "prepared")
    # Round 5 (Sep-Oct) is joined to a joint check of the city bureau.
    reduce_round(db, plan.id, 5, "joint", "参加市局组织的联合抽查（榕公信安〔2026〕12号）", CLI)
    windows = [(r.start, r.due) for r in round_schedule(plan, date(2026, 1, 1))]
    assert windows == [(date(2026, 1, 1), date(2026, 2, 28)), (date(2026, 3, 1), date(2026, 4, 30)),
                       (date(2026, 5, 1), date(2026, 6, 30)), (date(2026, 7, 1), date(2026, 8, 31)),
                       (date(2026, 9, 1), date(2026, 10, 31)), (date(2026, 11, 1), date(2026, 12, 31))]

    def statuses(today: date) -> list[str]:
        return [r.status for r in round_schedule(plan, today)]

    assert statuses(date(2026, 4, 15)) == ["published", "due", "prepared", "upcoming", "waived", "upcoming"]
    # Round 2 passed its due date with no draw; round 3 passed it with a draw only prepared.
    assert statuses(date(2026, 7, 15)) == ["published", "missing", "overdue", "due", "waived", "upcoming"]
    assert statuses(date(2026, 4, 30))[1] == "due" and statuses(date(2026, 5, 1))[1] == "missing"
    waived = round_schedule(plan, date(2026, 7, 15))[4]
    assert (waived.reduction_kind, waived.reduction_reason) == ("joint", "参加市局组织的联合抽查（榕公信安〔2026〕12号）")
    assert round_schedule(plan, date(2026, 7, 15))[0].task_number == "FZ-MW-2026-R01"
    summary = plan_summary(plan, date(2026, 7, 15))
    assert (summary.total, summary.due_so_far, summary.done, summary.waived, summary.missing, summary.overdue) == \
        (6, 3, 1, 1, 1, 1)

    _refused(422, "missing_field", reduce_round, db, plan.id, 6, "suspended", "  ", CLI)
    _refused(409, "round_drawn", reduce_round, db, plan.id, 3, "joint", "x", CLI)
    _refused(409, "round_reduced", reduce_round, db, plan.id, 5, "cross_department", "x", CLI)
    _refused(422, "bad_round", reduce_round, db, plan.id, 7, "joint", "x", CLI)
    _refused(422, "bad_kind", reduce_round, db, plan.id, 6, "holiday", "x", CLI)
    _refused(404, "unknown_plan", reduce_round, db, 999, 6, "joint", "x", CLI)
    reductions = list(db.scalars(select(AuditEntry).where(AuditEntry.action == "plan.reduce")))
    assert len(reductions) == 1 and "联合抽查" in reductions[0].detail


def test_monthly_plan_of_three_gives_36_rounds_due_at_each_months_end():
    plan = Plan(plan_number="PY-2026", name="濮阳县2026", jurisdiction="PY", authority="濮阳县公安局", year=2026,
                period="month", rounds=3, ratio="0.05", blacklist_ratio="0.05", inspectors_per_venue=2, min_pool=4)
    schedule = round_schedule(plan, date(2026, 2, 10))
    assert len(schedule) == 36
    assert [(r.start, r.due) for r in schedule[3:6]] == [(date(2026, 2, 1), date(2026, 2, 28))] * 3
    assert schedule[-1].due == date(2026, 12, 31) and schedule[-1].start == date(2026, 12, 1)
    assert [r.status for r in schedule[:7]] == ["missing"] * 3 + ["due"] * 3 + ["upcoming"]
    # A yearly plan of 5 (not a divisor of 12): windows follow ceil(12·i/5) months, without overlap.
    plan.period, plan.rounds = "year", 5
    assert [r.due.month for r in round_schedule(plan, date(2026, 1, 1))] == [3, 5, 8, 10, 12]


def _rules_copy(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    shutil.copytree(rules_directory(None), root, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return root


def _load_problems(root: Path, **replace: str) -> str:
    plans = root / "department" / "plans.yaml"
    text = plans.read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    plans.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_dept_rules(root / "department")
    return "\n".join(caught.value.problems)


def test_plans_yaml_below_the_minimums_or_unquoted_is_refused_with_file_and_key(tmp_path):
    root = _rules_copy(tmp_path)
    original = (root / "department" / "plans.yaml").read_text(encoding="utf-8")
    problems = _load_problems(root, **{
        "rounds: {count: 3, per: month}\n    ratio: \"0.05\"": "rounds: {count: 3, per: month}\n    ratio: \"0.03\"",
        "    min_pool: 4\n    source: seed 000 马尾区": "    min_pool: 3\n    source: seed 000 马尾区"})
    assert "department/plans.yaml: jurisdictions.PY.ratio: 0.03 is below minimums.ratio 0.05" in problems
    assert "department/plans.yaml: jurisdictions.FZ-MW.min_pool: 3 is below minimums.min_pool 4" in problems
    (root / "department" / "plans.yaml").write_text(original, encoding="utf-8")
    problems = _load_problems(root, **{"minimums:\n  ratio: \"0.05\"": "minimums:\n  ratio: 0.05",
                                       "  default:\n": "  dflt:\n"})
    assert "department/plans.yaml: minimums.ratio: Value error, 0.05 is not text: write the ratio quoted" in problems
    problems = _load_problems(root, **{"minimums:\n  ratio: 0.05": "minimums:\n  ratio: \"0.05\""})
    assert problems == "department/plans.yaml: jurisdictions: needs a 'default' entry"


def test_cli_plan_create_show_and_reduce(tmp_path, db_url):
    runner = CliRunner()
    opts = ["--data", str(tmp_path / "agent"), "--db", db_url]
    made = runner.invoke(cli, ["plan", "create", "FZ-MW", "2026", "--ratio", "0.06", *opts])
    assert made.exit_code == 0, made.output
    assert "FZ-MW-2026" in made.stdout and "0.06" in made.stdout
    low = runner.invoke(cli, ["plan", "create", "PY", "2026", "--inspectors", "1", *opts])
    assert low.exit_code == 1 and "低于下限" in low.stderr and len(low.stderr.strip().splitlines()) == 1
    cut = runner.invoke(cli, ["plan", "reduce", "FZ-MW-2026", "--round", "2", "--kind", "cross_department",
                              "--reason", "与文旅部门跨部门联合检查", *opts])
    assert cut.exit_code == 0, cut.output
    shown = runner.invoke(cli, ["plan", "show", "FZ-MW-2026", "--today", "2026-05-10", *opts])
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[2].startswith("1\t2026-01-01\t2026-02-28\t缺失 / missing")
    assert lines[3].startswith("2\t2026-03-01\t2026-04-30\t已核减 / waived") and "与文旅部门跨部门联合检查" in lines[3]
    assert lines[4].startswith("3\t2026-05-01\t2026-06-30\t应抽取 / due")
    bad_day = runner.invoke(cli, ["plan", "show", "FZ-MW-2026", "--today", "5/10", *opts])
    assert bad_day.exit_code == 1 and "YYYY-MM-DD" in bad_day.stderr
