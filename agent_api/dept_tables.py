"""The department side's tables: the two registries (两库), plans, draws, results and credit history.

Registries: :class:`Venue` (检查对象名录库) and :class:`Inspector` (执法检查人员
名录库) with each inspector's declared conflicts (:class:`Conflict`, 回避).
Plans (:class:`Plan`, :class:`PlanReduction`) say how many rounds are due
when. A :class:`Draw` is one round's task: prepared (snapshot frozen, secret
committed), drawn (witness inputs, seed, picks), published (secret revealed,
bundle public). :class:`DrawVenue` holds the venues a draw picked with their
inspectors; :class:`Result` the official result of each, with its changes
(:class:`ResultChange`); :class:`CreditEvent` is a venue's credit history.

Calendar dates (a check's end, a deadline, a blacklisting) are ``Date``;
moments are :class:`~agent_api.db.IsoDateTime` text with their UTC offset.
Ratios are exact decimal text (``"0.05"``), never floats: 5% of 60 venues is
3, and ``ceil(0.05 * 60)`` in floating point is 4. Every change to these
tables is also an entry in the append-only audit log (agent_api.audit).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from agent_api.orm import Base, IsoDateTime

__all__ = ["Venue", "Inspector", "Conflict", "Plan", "PlanReduction", "Draw", "DrawVenue", "Result",
           "ResultChange", "CreditEvent", "VENUE_STATUSES", "INSPECTOR_KINDS", "SEXES", "CODE_CHECKS",
           "PERIODS", "REDUCTION_KINDS", "DRAW_STATES", "CHECK_TYPES", "CHECK_TYPE_WORDS", "PICK_KINDS", "CREDIT_EVENT_KINDS"]

VENUE_STATUSES = ("open", "closed", "revoked")  # 营业 / 停业 / 吊销（注销）
INSPECTOR_KINDS = ("officer", "third_party")     # 民警 / 第三方技术人员 (never in the pool)
SEXES = ("male", "female")
# "ok": GB 32100-2015 checksum matches; "mismatch": well formed, wrong check
# character, waiting for a person to confirm; "confirmed": a person confirmed it.
CODE_CHECKS = ("ok", "mismatch", "confirmed")
PERIODS = ("year", "month")
REDUCTION_KINDS = ("joint", "cross_department", "suspended")  # 联合抽查 / 跨部门 / 突发事件停业
DRAW_STATES = ("prepared", "drawn", "published")
CHECK_TYPES = ("undirected", "directed")
CHECK_TYPE_WORDS = {"undirected": "不定向", "directed": "定向"}  # as the credit publicity system words them
PICK_KINDS = ("regular", "blacklist")
CREDIT_EVENT_KINDS = ("result", "result_changed", "blacklist_add", "blacklist_remove")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Venue(Base):
    """One entry of the venue registry. ``credit_code`` is the draw's key for it."""

    __tablename__ = "venues"
    __table_args__ = (
        CheckConstraint(_in("status", VENUE_STATUSES), name="status"),
        CheckConstraint(_in("code_check", CODE_CHECKS), name="code_check"),
        Index("ix_venues_jurisdiction", "jurisdiction"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(400))
    legal_rep: Mapped[str] = mapped_column(String(100))
    industry: Mapped[str] = mapped_column(String(100))
    jurisdiction: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    # The venue.id of its probe profile (e.g. FZ-MW-0042): links received reports to the venue.
    site_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    code_check: Mapped[str] = mapped_column(String(16))
    code_confirmed_by: Mapped[str | None] = mapped_column(String(100))
    code_confirmed_at: Mapped[datetime | None] = mapped_column(IsoDateTime)
    blacklisted: Mapped[bool] = mapped_column(default=False)
    blacklist_reason: Mapped[str | None] = mapped_column(Text)
    blacklisted_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(IsoDateTime)
    updated_at: Mapped[datetime] = mapped_column(IsoDateTime)


class Inspector(Base):
    """One entry of the inspector registry; only qualified, active officers are ever in a draw's pool."""

    __tablename__ = "inspectors"
    __table_args__ = (
        CheckConstraint(_in("sex", SEXES), name="sex"),
        CheckConstraint(_in("kind", INSPECTOR_KINDS), name="kind"),
        Index("ix_inspectors_jurisdiction", "jurisdiction"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    badge: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    sex: Mapped[str] = mapped_column(String(8))
    unit: Mapped[str] = mapped_column(String(200))
    post: Mapped[str] = mapped_column(String(100))
    jurisdiction: Mapped[str] = mapped_column(String(64))
    qualified: Mapped[bool] = mapped_column(default=True)
    kind: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(IsoDateTime)
    updated_at: Mapped[datetime] = mapped_column(IsoDateTime)

    conflicts: Mapped[list[Conflict]] = relationship(back_populates="inspector", order_by="Conflict.id")


class Conflict(Base):
    """An inspector's declared conflict of interest (回避) with a venue: never drawn for it."""

    __tablename__ = "conflicts"
    __table_args__ = (UniqueConstraint("inspector_id", "venue_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    inspector_id: Mapped[int] = mapped_column(ForeignKey("inspectors.id"))
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    declared_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(IsoDateTime)

    inspector: Mapped[Inspector] = relationship(back_populates="conflicts")
    venue: Mapped[Venue] = relationship(lazy="joined")


class Plan(Base):
    """A year's spot-check plan for one jurisdiction (年度抽查工作计划), from rules/department/plans.yaml defaults.

    ``rounds`` are due per ``period`` (6 a year; 3 a month); ``ratio`` and
    ``blacklist_ratio`` are exact decimal text; the minimums of the rules
    (5%, 2 inspectors, a pool of 4) are floors an officer cannot go below.
    """

    __tablename__ = "plans"
    __table_args__ = (
        CheckConstraint(_in("period", PERIODS), name="period"),
        CheckConstraint("rounds >= 1", name="rounds"),
        CheckConstraint("inspectors_per_venue >= 2", name="inspectors_per_venue"),
        CheckConstraint("min_pool >= 4", name="min_pool"),
        UniqueConstraint("jurisdiction", "year"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_number: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    jurisdiction: Mapped[str] = mapped_column(String(64))
    authority: Mapped[str] = mapped_column(String(200))
    year: Mapped[int] = mapped_column()
    period: Mapped[str] = mapped_column(String(8))
    rounds: Mapped[int] = mapped_column()
    ratio: Mapped[str] = mapped_column(String(16))
    blacklist_ratio: Mapped[str] = mapped_column(String(16))
    inspectors_per_venue: Mapped[int] = mapped_column()
    min_pool: Mapped[int] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(IsoDateTime)

    reductions: Mapped[list[PlanReduction]] = relationship(back_populates="plan", order_by="PlanReduction.id")
    draws: Mapped[list[Draw]] = relationship(back_populates="plan", order_by="Draw.id")


class PlanReduction(Base):
    """Rounds of a plan waived (joint or cross-department check, closure), with the reason; ``round_no`` is 1-based."""

    __tablename__ = "plan_reductions"
    __table_args__ = (
        CheckConstraint(_in("kind", REDUCTION_KINDS), name="kind"),
        UniqueConstraint("plan_id", "round_no"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"))
    round_no: Mapped[int] = mapped_column()
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = mapped_column(IsoDateTime)

    plan: Mapped[Plan] = relationship(back_populates="reductions")


class Draw(Base):
    """One round's task and its draw, in three recorded steps (see agent_api.draw_algorithm for the recipe).

    *prepared*: ``snapshot`` (the canonical registry lines), its SHA-256, the
    sizes and ``commitment`` (SHA-256 of ``secret``) are fixed and public;
    ``secret`` is never shown until *published*. *drawn*: ``witnesses`` (JSON
    list of ``{name, digits}``), ``beacon_value`` and ``seed`` are recorded and
    the picks stored in :class:`DrawVenue`. *published*: ``bundle`` is the
    public JSON; ``replacements`` (JSON list) grows with each approved change
    and the bundle is rebuilt with it.
    """

    __tablename__ = "draws"
    __table_args__ = (
        CheckConstraint(_in("state", DRAW_STATES), name="state"),
        CheckConstraint(_in("check_type", CHECK_TYPES), name="check_type"),
        UniqueConstraint("plan_id", "round_no"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"))
    round_no: Mapped[int] = mapped_column()
    task_number: Mapped[str] = mapped_column(String(64), unique=True)
    task_name: Mapped[str] = mapped_column(String(200))
    check_type: Mapped[str] = mapped_column(String(16))
    authority: Mapped[str] = mapped_column(String(200))
    check_start: Mapped[date] = mapped_column(Date)
    check_end: Mapped[date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16))
    algorithm: Mapped[str] = mapped_column(String(32))
    snapshot: Mapped[str] = mapped_column(Text)
    snapshot_sha256: Mapped[str] = mapped_column(String(64))
    announcement: Mapped[str] = mapped_column(Text)  # the prepare step's public JSON
    commitment: Mapped[str] = mapped_column(String(64))
    secret: Mapped[str] = mapped_column(String(64))  # hex; shown only once published
    beacon_name: Mapped[str | None] = mapped_column(Text)
    beacon_value: Mapped[str | None] = mapped_column(Text)
    witnesses: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[str | None] = mapped_column(String(64))
    replacements: Mapped[str] = mapped_column(Text, default="[]")
    bundle: Mapped[str | None] = mapped_column(Text)
    prepared_by: Mapped[str] = mapped_column(String(100))
    prepared_at: Mapped[datetime] = mapped_column(IsoDateTime)
    drawn_by: Mapped[str | None] = mapped_column(String(100))
    drawn_at: Mapped[datetime | None] = mapped_column(IsoDateTime)
    published_by: Mapped[str | None] = mapped_column(String(100))
    published_at: Mapped[datetime | None] = mapped_column(IsoDateTime)

    plan: Mapped[Plan] = relationship(back_populates="draws", lazy="joined")
    venues: Mapped[list[DrawVenue]] = relationship(back_populates="draw", order_by="DrawVenue.position")


class DrawVenue(Base):
    """A venue a draw picked, with its inspectors' badge numbers (JSON list, in dealing order).

    A pick withdrawn by an approved replacement stays with ``active`` false, so
    the published record keeps what was first drawn.
    """

    __tablename__ = "draw_venues"
    __table_args__ = (
        CheckConstraint(_in("kind", PICK_KINDS), name="kind"),
        UniqueConstraint("draw_id", "venue_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    draw_id: Mapped[int] = mapped_column(ForeignKey("draws.id"))
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column()
    ticket: Mapped[str] = mapped_column(String(64))
    inspectors: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)

    draw: Mapped[Draw] = relationship(back_populates="venues")
    venue: Mapped[Venue] = relationship(lazy="joined")
    result: Mapped[Result | None] = relationship(back_populates="draw_venue")


class Result(Base):
    """The official result of one drawn venue (a code of rules/result_types.yaml) and its deadline.

    ``deadline`` is 20 working days after ``completed_on`` (else after the
    task's ``check_end``), under the statutory holiday calendar;
    ``deadline_estimated`` says the calendar of that year was not confirmed
    and only weekends were counted. ``report_id`` links the case file of the
    probe report (issue 3) when there is one.
    """

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(primary_key=True)
    draw_venue_id: Mapped[int] = mapped_column(ForeignKey("draw_venues.id"), unique=True)
    result_type: Mapped[str] = mapped_column(String(40))
    completed_on: Mapped[date] = mapped_column(Date)
    remark: Mapped[str] = mapped_column(Text, default="")
    report_id: Mapped[str | None] = mapped_column(ForeignKey("reports.report_id"))
    deadline: Mapped[date] = mapped_column(Date)
    deadline_estimated: Mapped[bool] = mapped_column(default=False)
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = mapped_column(IsoDateTime)
    published_at: Mapped[datetime | None] = mapped_column(IsoDateTime)

    draw_venue: Mapped[DrawVenue] = relationship(back_populates="result", lazy="joined")
    changes: Mapped[list[ResultChange]] = relationship(back_populates="result", order_by="ResultChange.id")


class ResultChange(Base):
    """A published result changed (发现问题待后续处理 → 未发现问题, seed 001 (八)), with who, why and when."""

    __tablename__ = "result_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), index=True)
    from_type: Mapped[str] = mapped_column(String(40))
    to_type: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime] = mapped_column(IsoDateTime)

    result: Mapped[Result] = relationship(back_populates="changes")


class CreditEvent(Base):
    """One line of a venue's credit history: a published result, a change of it, or a blacklist change."""

    __tablename__ = "credit_events"
    __table_args__ = (CheckConstraint(_in("kind", CREDIT_EVENT_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    result_type: Mapped[str | None] = mapped_column(String(40))
    task_number: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    event_on: Mapped[date] = mapped_column(Date)
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = mapped_column(IsoDateTime)

    venue: Mapped[Venue] = relationship(lazy="joined")
