"""Where the inspector-device service keeps its state, and what time it is there.

Everything lives in one data directory (``--data DIR``, else ``$CAFE_AGENT_HOME``,
else ``~/.local/share/cafe-agent``): ``agent.db`` (SQLite), ``agent.key``
(the agent's Ed25519 private key, mode 0600) and ``agent.pub``; on a department
server also ``department.key`` / ``department.pub`` (the task-pack signing key)
and ``profiles/`` (the venue profiles packs are made from). The database URL
can point elsewhere (``--db URL`` / ``$CAFE_AGENT_DB``) so that a department
server can use PostgreSQL with the same code and migrations.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = ["Settings", "HOME_ENV", "DB_ENV", "TZ_ENV", "DEFAULT_TZ", "SESSION_HOURS"]

HOME_ENV = "CAFE_AGENT_HOME"
DB_ENV = "CAFE_AGENT_DB"
TZ_ENV = "CAFE_AGENT_TZ"
DEFAULT_TZ = "Asia/Shanghai"
SESSION_HOURS = 8


def _default_home() -> Path:
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env)
    return Path.home() / ".local" / "share" / "cafe-agent"


@dataclass(frozen=True)
class Settings:
    """The service's configuration; build it with :meth:`from_env` unless a test needs otherwise.

    ``data_dir`` holds the key pair and, unless ``db_url`` says otherwise, the
    SQLite file. ``timezone`` is the zone every stored and shown time carries
    (with its UTC offset), Asia/Shanghai unless ``$CAFE_AGENT_TZ`` says otherwise.
    """

    data_dir: Path
    db_url: str | None = None
    timezone: str = field(default_factory=lambda: os.environ.get(TZ_ENV, DEFAULT_TZ))

    @classmethod
    def from_env(cls, data: Path | None = None, db: str | None = None) -> Settings:
        """Settings from the CLI options, falling back to the environment and the defaults."""
        return cls(data_dir=Path(data) if data else _default_home(), db_url=db or os.environ.get(DB_ENV) or None)

    @property
    def db_path(self) -> Path:
        """The SQLite file used when no other database URL is given."""
        return self.data_dir / "agent.db"

    @property
    def key_path(self) -> Path:
        """The agent's private key (receipts are signed with it)."""
        return self.data_dir / "agent.key"

    @property
    def pub_path(self) -> Path:
        """The agent's public key, for technicians to pin in the probes."""
        return self.data_dir / "agent.pub"

    @property
    def department_key_path(self) -> Path:
        """The department's private key (task packs are signed with it; not the receipt key: another role)."""
        return self.data_dir / "department.key"

    @property
    def department_pub_path(self) -> Path:
        """The department's public key, for technicians to pin in the probes (``cafe-probe pin-department``)."""
        return self.data_dir / "department.pub"

    @property
    def profiles_dir(self) -> Path:
        """The stored venue profiles, one private folder per venue id (agent_api.venue_profiles)."""
        return self.data_dir / "profiles"

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL in use."""
        return self.db_url or f"sqlite:///{self.db_path}"

    @property
    def zone(self) -> ZoneInfo:
        """The configured time zone."""
        return ZoneInfo(self.timezone)

    def now(self) -> datetime:
        """The current time in the configured zone (aware, with its UTC offset)."""
        return datetime.now(self.zone)
