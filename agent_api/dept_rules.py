"""The department side's rules: plan defaults and floors, result deadlines and blacklisting, the holiday table.

Three files under ``rules/department/`` (beside the ruleset they belong to):

* ``plans.yaml`` — ``minimums`` (floors no plan may go below) and
  ``jurisdictions`` (the defaults a new plan starts from; ``default`` for a
  jurisdiction not listed);
* ``results.yaml`` — the publication ``deadline`` in working days, the result
  types that put a venue on the blacklist, those that lift it when a result
  is changed to them, and the only changes allowed;
* ``holidays.yaml`` — statutory holidays and adjusted working days by year
  (agent_api.workdays reads it before chinese-calendar).

:func:`load_dept_rules` checks everything before returning and raises
probe.rules.RulesError listing every problem with its file and key, so a
technician fixes them in one pass.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from agent_api import draw_algorithm as algo
from probe.rules import RulesError, Ruleset, load_ruleset, rules_directory
# The ruleset's own YAML reading (duplicate keys refused, errors with file and
# line) and its pydantic-error wording: the same for every file under rules/.
from probe.rules import _Data  # file models: unknown keys are errors, values frozen
from probe.rules import _parse as _parse_yaml
from probe.rules import _validate

__all__ = ["DEPT_DIR", "Minimums", "Rounds", "JurisdictionRules", "DeadlineRules", "ResultRules",
           "HolidayRange", "AdjustedWorkday", "HolidayYear", "DeptRules", "load_dept_rules", "dept_rules",
           "parse_ratio", "Ratio", "DEFAULT_JURISDICTION"]

DEPT_DIR = "department"
DEFAULT_JURISDICTION = "default"
_PLANS = f"{DEPT_DIR}/plans.yaml"
_RESULTS = f"{DEPT_DIR}/results.yaml"
_HOLIDAYS = f"{DEPT_DIR}/holidays.yaml"
# Jurisdiction codes end up in plan numbers, file names and registry columns.
_JURISDICTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,58}$")


def parse_ratio(text: str) -> Fraction:
    """An exact decimal ratio in (0, 1] (``"0.05"``, spaces around it ignored) as a Fraction.

    The draw algorithm's own reading (the one the published verifier uses),
    so a plan can never hold a ratio the draw reads differently; ValueError
    says what is wrong.
    """
    return algo.parse_ratio(text.strip() if isinstance(text, str) else text)


def _ratio_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text: write the ratio quoted, e.g. \"0.05\" (a float is not exact)")
    parse_ratio(value)
    return value.strip()


Ratio = Annotated[str, BeforeValidator(_ratio_text)]
"""A ratio as exact decimal text in (0, 1], checked when the file is read."""


class Minimums(_Data):
    """Floors of every plan: ratios as decimal text, counts as integers."""

    ratio: Ratio
    blacklist_ratio: Ratio
    inspectors_per_venue: int = Field(ge=2, description="seed 001 二: at least two inspectors on site")
    min_pool: int = Field(ge=4, description="seed 000 二(二): a pool of at least 4")


class Rounds(_Data):
    """How many rounds are due per period."""

    count: int = Field(ge=1, le=366)
    per: Literal["year", "month"]


class JurisdictionRules(_Data):
    """The defaults a new plan of one jurisdiction starts from."""

    name: str = Field(min_length=1)
    authority: str
    rounds: Rounds
    ratio: Ratio
    blacklist_ratio: Ratio
    inspectors_per_venue: int
    min_pool: int
    source: str = Field(min_length=1)


class _PlansFile(_Data):
    minimums: Minimums
    jurisdictions: dict[str, JurisdictionRules]


class DeadlineRules(_Data):
    """Results are published within ``working_days`` after the check; ``due_soon_working_days`` flags them."""

    working_days: int = Field(ge=1, le=250)
    due_soon_working_days: int = Field(ge=0)


class ResultRules(_Data):
    """results.yaml: deadline, blacklisting result types (code -> reason), clearing types, allowed changes."""

    deadline: DeadlineRules
    blacklist_on: dict[str, str]
    clears: list[str]
    change_allowed: dict[str, list[str]]


class HolidayRange(_Data):
    """Consecutive days off (``from`` .. ``to`` inclusive) of one holiday."""

    start: date = Field(alias="from")
    to: date
    name: str = Field(min_length=1)

    def days(self) -> list[date]:
        """Every day of the range."""
        return [self.start + timedelta(days=i) for i in range((self.to - self.start).days + 1)]


class AdjustedWorkday(_Data):
    """A weekend day that is a working day (调休上班)."""

    date: date
    name: str = Field(min_length=1)


class HolidayYear(_Data):
    """One year's complete schedule, from the State Council's notice named in ``source``."""

    source: str = Field(min_length=1)
    holidays: list[HolidayRange] = Field(min_length=1)
    workdays: list[AdjustedWorkday] = Field(default_factory=list)


class _HolidaysFile(_Data):
    years: dict[int, HolidayYear] = Field(default_factory=dict)


class DeptRules(BaseModel):
    """The loaded, validated department rules. Build them with :func:`load_dept_rules`."""

    model_config = ConfigDict(frozen=True)

    root: Path = Field(description="the department directory they were read from")
    ruleset: Ruleset = Field(description="the ruleset of the rules directory around it (result types)")
    minimums: Minimums
    jurisdictions: dict[str, JurisdictionRules]
    results: ResultRules
    holidays: dict[int, HolidayYear]

    def plan_defaults(self, jurisdiction: str) -> JurisdictionRules:
        """The defaults for ``jurisdiction``; the ``default`` entry for one not listed."""
        return self.jurisdictions.get(jurisdiction, self.jurisdictions[DEFAULT_JURISDICTION])


def load_dept_rules(root: Path | None = None) -> DeptRules:
    """Load and check the department rules.

    ``root`` is a ``department`` directory inside a rules directory (default:
    the one of probe.rules.rules_directory, i.e. ``$CAFE_PROBE_RULES`` or the
    shipped rules); result type codes are checked against that rules
    directory's result_types.yaml. Raises RulesError listing every problem.
    """
    root = Path(root) if root is not None else rules_directory(None) / DEPT_DIR
    if not root.is_dir():
        raise RulesError(f"{root}: department rules directory not found")
    ruleset = load_ruleset(root.parent)
    tree = {f"{DEPT_DIR}/{p.name}": p.read_bytes() for p in root.glob("*.yaml") if p.is_file()}
    problems: list[str] = []
    plans = _validate(_PlansFile, _parse_yaml(_PLANS, tree, problems), _PLANS, "", problems)
    results = _validate(ResultRules, _parse_yaml(_RESULTS, tree, problems), _RESULTS, "", problems)
    holidays = _validate(_HolidaysFile, _parse_yaml(_HOLIDAYS, tree, problems), _HOLIDAYS, "", problems)
    if plans:
        _check_plans(plans, problems)
    if results:
        _check_results(results, ruleset, problems)
    if holidays:
        for year, entry in holidays.years.items():
            _check_year(year, entry, problems)
    if problems or not (plans and results and holidays):
        raise RulesError(problems or [f"{root}: department rules could not be loaded"])
    return DeptRules(root=root, ruleset=ruleset, minimums=plans.minimums, jurisdictions=plans.jurisdictions, results=results,
                     holidays=holidays.years)


@lru_cache(maxsize=1)
def dept_rules() -> DeptRules:
    """The department rules in force on this device (loaded once per process)."""
    return load_dept_rules()


# ------------------------------------------------------------------ checks


def _check_plans(plans: _PlansFile, problems: list[str]) -> None:
    floor = plans.minimums
    if DEFAULT_JURISDICTION not in plans.jurisdictions:
        problems.append(f"{_PLANS}: jurisdictions: needs a '{DEFAULT_JURISDICTION}' entry")
    for code, j in plans.jurisdictions.items():
        where = f"{_PLANS}: jurisdictions.{code}"
        if not _JURISDICTION.match(code):
            problems.append(f"{where}: code must be letters, digits, '-' or '_' (at most 59)")
        if j.rounds.per == "month" and j.rounds.count > 31:
            problems.append(f"{where}.rounds.count: at most 31 rounds a month")
        for key in ("ratio", "blacklist_ratio"):
            if parse_ratio(getattr(j, key)) < parse_ratio(getattr(floor, key)):
                problems.append(f"{where}.{key}: {getattr(j, key)} is below minimums.{key} {getattr(floor, key)}")
        for key in ("inspectors_per_venue", "min_pool"):
            if getattr(j, key) < getattr(floor, key):
                problems.append(f"{where}.{key}: {getattr(j, key)} is below minimums.{key} {getattr(floor, key)}")
        if j.min_pool < j.inspectors_per_venue:
            problems.append(f"{where}.min_pool: smaller than inspectors_per_venue")


def _check_results(results: ResultRules, ruleset: Ruleset, problems: list[str]) -> None:
    known = ruleset.result_types

    def code(where: str, value: str) -> None:
        if value not in known:
            problems.append(f"{_RESULTS}: {where}: {value!r} is not a code in result_types.yaml")

    if results.deadline.due_soon_working_days >= results.deadline.working_days:
        problems.append(f"{_RESULTS}: deadline.due_soon_working_days: must be below working_days")
    for key, reason in results.blacklist_on.items():
        code(f"blacklist_on.{key}", key)
        if not reason.strip():
            problems.append(f"{_RESULTS}: blacklist_on.{key}: the reason is empty")
    for i, value in enumerate(results.clears):
        code(f"clears.{i}", value)
        if value in results.blacklist_on:
            problems.append(f"{_RESULTS}: clears.{i}: {value} also puts venues on the blacklist")
    for source, targets in results.change_allowed.items():
        code(f"change_allowed.{source}", source)
        for i, target in enumerate(targets):
            code(f"change_allowed.{source}.{i}", target)
            if target == source:
                problems.append(f"{_RESULTS}: change_allowed.{source}.{i}: a change to the same type")


def _check_year(year: int, entry: HolidayYear, problems: list[str]) -> None:
    where = f"{_HOLIDAYS}: years.{year}"
    off: dict[date, str] = {}
    for i, rng in enumerate(entry.holidays):
        at = f"{where}.holidays.{i} ({rng.name})"
        if rng.start > rng.to:
            problems.append(f"{at}: from {rng.start} is after to {rng.to}")
            continue
        if rng.start.year != year or rng.to.year != year:
            problems.append(f"{at}: {rng.start}..{rng.to} is not inside {year}")
        if all(d.weekday() >= 5 for d in rng.days()):
            problems.append(f"{at}: only weekend days; a holiday gives at least one weekday off")
        for d in rng.days():
            if d in off:
                problems.append(f"{at}: {d} is also in {off[d]}")
                break
            off[d] = rng.name
    seen: set[date] = set()
    for i, work in enumerate(entry.workdays):
        at = f"{where}.workdays.{i} ({work.name})"
        if work.date.year != year:
            problems.append(f"{at}: {work.date} is not in {year}")
        if work.date.weekday() < 5:
            problems.append(f"{at}: {work.date} is a weekday; only weekend days are adjusted working days")
        if work.date in off:
            problems.append(f"{at}: {work.date} is inside the holiday {off[work.date]}")
        if work.date in seen:
            problems.append(f"{at}: {work.date} listed twice")
        seen.add(work.date)
