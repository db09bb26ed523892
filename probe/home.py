"""The probe's home directory: its key pair, identity, pinned inspector device and outbox.

Layout (all under one directory, default ``/var/lib/cafe-probe`` or
``$CAFE_PROBE_HOME``)::

    probe.key      Ed25519 private key, mode 0600, never printed
    probe.pub      its public key (PEM), what a technician enrolls
    probe.json     {"probe_id", "key_id", "created_at"}
    agent.json     the inspector device: {"url", "public_key", "key_id"} (pinned)
    outbox/        signed reports waiting to be sent, and sent/ with their receipts
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from probe.keys import KeyFileError, generate_key_files, key_id, load_private_key, parse_public_key, public_line
from probe.report import write_atomic

__all__ = ["HomeError", "ProbeHome", "ProbeIdentity", "PinnedAgent", "default_home"]

PROBE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class HomeError(Exception):
    """The probe home lacks something or holds something invalid; the message is one line."""


def default_home() -> Path:
    """``$CAFE_PROBE_HOME``, else ``/var/lib/cafe-probe``."""
    return Path(os.environ.get("CAFE_PROBE_HOME", "/var/lib/cafe-probe"))


@dataclass(frozen=True)
class ProbeIdentity:
    """Who this probe is: its id, signing key and key id."""

    probe_id: str
    key_id: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()


@dataclass(frozen=True)
class PinnedAgent:
    """The inspector device the probe reports to, with its receipt key pinned."""

    url: str
    public_key: Ed25519PublicKey
    key_id: str


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HomeError(f"检查设备地址无效 / not an http(s) URL: {url!r}")
    return url.rstrip("/")


@dataclass(frozen=True)
class ProbeHome:
    """Paths and loaders of one probe home."""

    root: Path

    @property
    def private_key_path(self) -> Path:
        return self.root / "probe.key"

    @property
    def public_key_path(self) -> Path:
        return self.root / "probe.pub"

    @property
    def identity_path(self) -> Path:
        return self.root / "probe.json"

    @property
    def agent_path(self) -> Path:
        return self.root / "agent.json"

    @property
    def outbox_path(self) -> Path:
        return self.root / "outbox"

    def keygen(self, probe_id: str | None = None) -> ProbeIdentity:
        """Make this probe's key pair and identity; refuses when a key already exists."""
        probe_id = probe_id or socket.gethostname()
        if not PROBE_ID_RE.match(probe_id):
            raise HomeError(f"探针编号无效 / probe id must be 1–64 of A-Z a-z 0-9 . _ - : {probe_id!r}")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            public = generate_key_files(self.private_key_path, self.public_key_path)
        except KeyFileError as exc:
            raise HomeError(str(exc)) from None
        doc = {"probe_id": probe_id, "key_id": key_id(public),
               "created_at": datetime.now(ZoneInfo("Asia/Shanghai")).isoformat(timespec="seconds")}
        write_atomic(self.identity_path, json.dumps(doc, indent=1).encode() + b"\n")
        return self.identity()

    def identity(self) -> ProbeIdentity:
        """Load the probe's identity; the key id is recomputed from the key, never trusted from the file."""
        if not self.private_key_path.exists():
            raise HomeError(f"探针没有密钥，请先运行 cafe-probe keygen --home {self.root} / no probe key in "
                            f"{self.root}; run 'cafe-probe keygen' first")
        try:
            private = load_private_key(self.private_key_path)
            doc = json.loads(self.identity_path.read_text(encoding="utf-8"))
        except KeyFileError as exc:
            raise HomeError(str(exc)) from None
        except (OSError, ValueError) as exc:
            raise HomeError(f"{self.identity_path}: 无法读取探针身份 / cannot read the probe identity ({exc})") from None
        probe_id = doc.get("probe_id") if isinstance(doc, dict) else None
        if not isinstance(probe_id, str) or not PROBE_ID_RE.match(probe_id):
            raise HomeError(f"{self.identity_path}: probe_id 缺失或无效 / probe_id missing or invalid")
        return ProbeIdentity(probe_id=probe_id, key_id=key_id(private.public_key()), private_key=private)

    def pin_agent(self, url: str, public_key_text: str) -> PinnedAgent:
        """Record the inspector device's address and receipt key."""
        url = _check_url(url)
        try:
            key = parse_public_key(public_key_text)
        except KeyFileError as exc:
            raise HomeError(f"检查设备公钥 / agent key: {exc}") from None
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {"url": url, "public_key": public_line(key), "key_id": key_id(key)}
        write_atomic(self.agent_path, json.dumps(doc, indent=1).encode() + b"\n")
        return PinnedAgent(url=url, public_key=key, key_id=key_id(key))

    def agent(self) -> PinnedAgent:
        """The pinned inspector device."""
        if not self.agent_path.exists():
            raise HomeError(f"未设置检查设备，请运行 cafe-probe pin-agent / no inspector device pinned in "
                            f"{self.root}; run 'cafe-probe pin-agent --url URL --pubkey KEY'")
        try:
            doc = json.loads(self.agent_path.read_text(encoding="utf-8"))
            url = _check_url(doc["url"])
            key = parse_public_key(doc["public_key"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HomeError(f"{self.agent_path}: 检查设备记录无效 / invalid agent record ({exc})") from None
        return PinnedAgent(url=url, public_key=key, key_id=key_id(key))
