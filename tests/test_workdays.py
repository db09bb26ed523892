"""The statutory working-day calendar: deadlines across the 2026 holidays, counted by hand, and unconfirmed years.

Expected dates come from the State Council's notice for 2026 as
rules/department/holidays.yaml transcribes it: 元旦 1/1-1/3 (work Sun 1/4);
春节 2/15-2/23 (work Sat 2/14, Sat 2/28); 清明 4/4-4/6; 劳动节 5/1-5/5 (work
Sat 5/9); 端午 6/19-6/21; 中秋 9/25-9/27; 国庆 10/1-10/7 (work Sun 9/20, Sat 10/10).
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_api.dept_rules import dept_rules, load_dept_rules
from agent_api.workdays import WorkCalendar
from probe.rules import RulesError, rules_directory

CAL = WorkCalendar.from_rules()


def test_spring_festival_2026_with_both_adjusted_saturdays():
    # Check ended Fri 2026-02-06. Working days after it:
    #  1-5  Mon 2/9 .. Fri 2/13
    #  6    Sat 2/14 (调休上班)
    #  --   Sun 2/15 .. Mon 2/23 春节
    #  7-10 Tue 2/24 .. Fri 2/27
    #  11   Sat 2/28 (调休上班); Sun 3/1 off
    #  12-16 Mon 3/2 .. Fri 3/6
    #  17-20 Mon 3/9 .. Thu 3/12
    deadline = CAL.add_working_days(date(2026, 2, 6), 20)
    assert deadline.date == date(2026, 3, 12)
    assert not deadline.estimated and deadline.unconfirmed_years == ()


def test_national_day_2026_with_adjusted_sunday_and_saturday():
    # Check ended Fri 2026-09-18. Working days after it:
    #  --   Sat 9/19
    #  1    Sun 9/20 (调休上班)
    #  2-5  Mon 9/21 .. Thu 9/24
    #  --   Fri 9/25 .. Sun 9/27 中秋
    #  6-8  Mon 9/28 .. Wed 9/30
    #  --   Thu 10/1 .. Wed 10/7 国庆
    #  9-10 Thu 10/8, Fri 10/9
    #  11   Sat 10/10 (调休上班); Sun 10/11 off
    #  12-16 Mon 10/12 .. Fri 10/16
    #  17-20 Mon 10/19 .. Thu 10/22
    deadline = CAL.add_working_days(date(2026, 9, 18), 20)
    assert deadline.date == date(2026, 10, 22)
    assert not deadline.estimated


def test_december_2026_check_runs_into_unconfirmed_2027_and_is_marked():
    # Check ended Thu 2026-12-10. Working days after it:
    #  1    Fri 12/11
    #  2-6  Mon 12/14 .. Fri 12/18
    #  7-11 Mon 12/21 .. Fri 12/25
    #  12-15 Mon 12/28 .. Thu 12/31
    #  16   Fri 2027-01-01: no confirmed schedule, counted as a plain Friday
    #  17-20 Mon 1/4 .. Thu 1/7
    deadline = CAL.add_working_days(date(2026, 12, 10), 20)
    assert deadline.date == date(2027, 1, 7)
    assert deadline.estimated and deadline.unconfirmed_years == (2027,)
    assert not CAL.confirmed(2027) and CAL.confirmed(2026)


def test_the_2026_table_agrees_with_chinese_calendar_on_every_day():
    day, disagree = date(2026, 1, 1), []
    while day.year == 2026:
        if CAL.is_workday(day) != chinese_calendar.is_workday(day):
            disagree.append(day)
        day += timedelta(days=1)
    assert disagree == []
    # The table is what answers for 2026: a table without 2026 falls back to the package, same answers.
    assert 2026 in dept_rules().holidays


def test_years_of_the_package_and_years_without_schedule():
    assert CAL.is_workday(date(2025, 9, 28))          # Sun, 2025 国庆 调休上班 (package data)
    assert not CAL.is_workday(date(2025, 10, 8))      # Wed, 2025 国庆/中秋
    assert CAL.confirmed(2004) and not CAL.confirmed(2003)
    assert CAL.is_workday(date(2003, 10, 1))          # no confirmed schedule: a Wednesday is a working day
    assert not CAL.is_workday(date(2031, 1, 4))       # a Saturday


def test_working_days_between_counts_days_left_and_overdue():
    # (2/6, 3/12] holds the 20 working days counted above; on the deadline itself none are left.
    assert CAL.working_days_between(date(2026, 2, 6), date(2026, 3, 12)) == 20
    assert CAL.working_days_between(date(2026, 3, 12), date(2026, 3, 12)) == 0
    assert CAL.working_days_between(date(2026, 3, 10), date(2026, 3, 12)) == 2
    assert CAL.working_days_between(date(2026, 3, 16), date(2026, 3, 12)) == -2   # Fri 3/13, Mon 3/16
    assert CAL.working_days_between(date(2026, 2, 13), date(2026, 2, 24)) == 2    # Sat 2/14, Tue 2/24


def _rules_copy(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    shutil.copytree(rules_directory(None), root, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return root


# Test data standing for a technician's transcription of a future notice (not the real 2027 notice).
YEAR_2027 = """
  2027:
    source: 国务院办公厅关于2027年部分节假日安排的通知（测试数据）
    holidays:
      - {from: 2027-01-01, to: 2027-01-03, name: 元旦}
      - {from: 2027-02-06, to: 2027-02-14, name: 春节}
    workdays:
      - {date: 2027-02-20, name: 春节调休上班}
"""


def test_a_year_added_by_a_technician_confirms_the_december_case(tmp_path):
    root = _rules_copy(tmp_path)
    holidays = root / "department" / "holidays.yaml"
    holidays.write_text(holidays.read_text(encoding="utf-8") + YEAR_2027, encoding="utf-8")
    cal = WorkCalendar.from_rules(load_dept_rules(root / "department"))
    # As above to 15 on Thu 12/31; Fri 1/1 is now 元旦 (off, with Sat 1/2, Sun 1/3); 16-20 Mon 1/4 .. Fri 1/8.
    deadline = cal.add_working_days(date(2026, 12, 10), 20)
    assert deadline.date == date(2027, 1, 8)
    assert not deadline.estimated and cal.confirmed(2027)
    assert cal.is_workday(date(2027, 2, 20)) and not cal.is_workday(date(2027, 2, 8))


@pytest.mark.parametrize("block, message", [
    ("{from: 2027-12-30, to: 2028-01-02, name: 元旦}", "is not inside 2027"),
    ("{from: 2027-01-02, to: 2027-01-03, name: 元旦}", "only weekend days"),
    ("{from: 2027-01-05, to: 2027-01-01, name: 元旦}", "is after to"),
])
def test_holiday_table_mistakes_are_named_with_file_and_key(tmp_path, block, message):
    root = _rules_copy(tmp_path)
    holidays = root / "department" / "holidays.yaml"
    holidays.write_text(holidays.read_text(encoding="utf-8") + f"""
  2027:
    source: test
    holidays:
      - {block}
      - {{from: 2027-05-01, to: 2027-05-05, name: 劳动节}}
      - {{from: 2027-05-05, to: 2027-05-06, name: 重叠}}
    workdays:
      - {{date: 2027-05-07, name: 周五}}
""", encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_dept_rules(root / "department")
    problems = "\n".join(caught.value.problems)
    assert "department/holidays.yaml: years.2027.holidays.0" in problems and message in problems
    assert "2027-05-05 is also in 劳动节" in problems
    assert "years.2027.workdays.0 (周五): 2027-05-07 is a weekday" in problems


@settings(max_examples=300, deadline=None)
@given(start=st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31)), n=st.integers(0, 60))
def test_any_date_from_1990_to_2100_gives_a_deadline_never_a_crash(start, n):
    deadline = CAL.add_working_days(start, n)
    assert CAL.working_days_between(start, deadline.date) == n
    if n:
        assert deadline.date > start and CAL.is_workday(deadline.date)
    years = range((start + timedelta(days=1)).year, deadline.date.year + 1) if n else range(0)
    unconfirmed = tuple(y for y in years if not (2004 <= y <= 2026))
    assert deadline.unconfirmed_years == unconfirmed and deadline.estimated == bool(unconfirmed)
