"""The declarative base every table of the agent derives from, and the one column type they share.

Its own module so that the device's tables (agent_api/db.py) and the
department's (agent_api/dept_tables.py) both build on it without importing
each other; db.py imports the department's tables once, so that
``Base.metadata`` holds the whole schema wherever it is migrated or compared.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

__all__ = ["Base", "IsoDateTime", "NAMING"]

# Deterministic constraint names, so that the migration can name what it creates
# and a later migration can drop it on any dialect.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class IsoDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as ISO 8601 text with its UTC offset; naive datetimes are refused."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: every stored time carries its UTC offset")
        return value.isoformat()

    def process_result_value(self, value: str | None, dialect: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING)
