"""Findings: what a check concluded, in the shape DESIGN.md section 5 fixes."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    """A finding's status. ``inconclusive`` is never folded into ``pass``."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not_applicable"
    MANUAL = "manual"


class Citation(BaseModel):
    """One legal provision, as in force on the inspection date."""

    model_config = ConfigDict(frozen=True)

    law: str
    article: str | None = None
    in_force_from: date | None = None
    in_force_until: date | None = None
    verified: str = Field(description="V verified, P substance only, M unverified (LEGAL.md marks)")
    note: str | None = None


class Verdict(BaseModel):
    """What a check function returns: the decision and what it rests on.

    ``reason`` selects the message template in the catalogue (rules/), and
    ``values`` fill its placeholders, so that the words stay in rules/.
    """

    status: Status
    reason: str
    values: dict[str, Any] = Field(default_factory=dict)
    evidence: dict[str, Any] = Field(default_factory=dict)


class Finding(BaseModel):
    """A check's verdict dressed with the catalogue's words and legal basis."""

    check_id: str
    status: Status
    title_zh: str
    title_en: str
    summary_zh: str
    summary_en: str
    evidence: dict[str, Any]
    legal_basis: list[Citation]
    result_type: str | None = Field(
        default=None, description="suggested official result type code, on failure only"
    )
