"""The statutory working-day calendar (法定工作日) that result deadlines are counted in.

A day's status comes from, in order:

1. rules/department/holidays.yaml, when it lists the day's year (a listed year
   is complete: its holidays are off, its adjusted weekend days are working
   days, every other day follows the week);
2. the chinese-calendar package (2004-2026 in version 1.11; it raises
   NotImplementedError outside the years it knows);
3. nothing confirmed: Monday to Friday count as working days, and every
   deadline that counts or skips such a day is marked as an estimate.

Results are due within 20 working days "after the check ends" (seed 001 三):
the deadline is the 20th working day strictly after the day the check ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import chinese_calendar

from agent_api.dept_rules import DeptRules, HolidayYear, dept_rules

__all__ = ["Deadline", "WorkCalendar", "calendar"]

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Deadline:
    """The n-th working day after a start; ``estimated`` when a day counted or skipped had no confirmed schedule."""

    date: date
    estimated: bool
    unconfirmed_years: tuple[int, ...] = ()


@dataclass(frozen=True)
class _YearTable:
    off: frozenset[date]
    on: frozenset[date]


@lru_cache(maxsize=512)
def _package_knows(year: int) -> bool:
    """Whether chinese-calendar has the State Council's schedule of ``year`` (asked, not assumed)."""
    try:
        chinese_calendar.is_workday(date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


class WorkCalendar:
    """Working days from the holiday table, then chinese-calendar, else weekends only (estimated)."""

    def __init__(self, holidays: Mapping[int, HolidayYear]) -> None:
        self._tables = {
            year: _YearTable(off=frozenset(d for r in entry.holidays for d in r.days()),
                             on=frozenset(w.date for w in entry.workdays))
            for year, entry in holidays.items()
        }

    @classmethod
    def from_rules(cls, rules: DeptRules | None = None) -> WorkCalendar:
        """The calendar of ``rules`` (default: the rules in force on this device)."""
        return cls((rules or dept_rules()).holidays)

    def confirmed(self, year: int) -> bool:
        """Whether ``year`` has a confirmed schedule (in the table or in chinese-calendar)."""
        return year in self._tables or _package_knows(year)

    def is_workday(self, d: date) -> bool:
        """Whether ``d`` is a working day (for an unconfirmed year: whether it is Monday to Friday)."""
        table = self._tables.get(d.year)
        if table is not None:
            return d in table.on or (d.weekday() < 5 and d not in table.off)
        if _package_knows(d.year):
            return bool(chinese_calendar.is_workday(d))
        return d.weekday() < 5

    def add_working_days(self, start: date, n: int) -> Deadline:
        """The ``n``-th working day strictly after ``start`` (``n`` = 0: ``start`` itself).

        ValueError when ``n`` is negative or the result would pass the last
        date Python can represent.
        """
        if n < 0:
            raise ValueError(f"n must be at least 0, not {n}")
        day, counted, unconfirmed = start, 0, set()
        try:
            while counted < n:
                day += _DAY
                if not self.confirmed(day.year):
                    unconfirmed.add(day.year)
                if self.is_workday(day):
                    counted += 1
        except OverflowError:
            raise ValueError(f"{n} working days after {start} is past {date.max}") from None
        return Deadline(day, bool(unconfirmed), tuple(sorted(unconfirmed)))

    def working_days_between(self, a: date, b: date) -> int:
        """Working days in (a, b] when ``b`` is after ``a``; minus those in (b, a] when it is before.

        So ``working_days_between(today, deadline)`` is the working days left
        (0 on the deadline itself, negative once it has passed), and
        ``working_days_between(s, add_working_days(s, n).date) == n``.
        """
        if b < a:
            return -self.working_days_between(b, a)
        count, day = 0, a
        while day < b:
            day += _DAY
            count += self.is_workday(day)
        return count


def calendar(rules: DeptRules | None = None) -> WorkCalendar:
    """The working-day calendar of ``rules`` (default: the rules in force on this device)."""
    return WorkCalendar.from_rules(rules)
