"""The probe's home directory: its key pair, identity, pinned inspector device and outbox.

Layout (all under one directory, default ``/var/lib/cafe-probe`` or
``$CAFE_PROBE_HOME``)::

    probe.key      Ed25519 private key, mode 0600, never printed
    probe.pub      its public key (PEM), what a technician enrolls
    probe.json     {"probe_id", "key_id", "created_at"}
    agent.json     the inspector device: {"url", "public_key", "key_id"} (pinned)
    departments.json  the department keys task packs must be signed by: [{"name", "public_key", "key_id",
                   "pinned_at"}] (several while a key is rotated)
    staged/        task packs as received, signed and with their secrets still sealed (probe/staging.py)
    outbox/        signed reports waiting to be sent, and sent/ with their receipts

Enrolment moves no private key: the technician gives the department server the
probe's id and public key, as ``probe.pub`` or as the one-line enrolment code
of :meth:`ProbeHome.enrollment_code` (short enough for a QR code).
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

from probe.keys import (LINE_PREFIX, KeyFileError, generate_key_files, key_id, load_private_key, parse_public_key,
                        public_line)
from probe.report import write_atomic

__all__ = ["HomeError", "ProbeHome", "ProbeIdentity", "PinnedAgent", "PinnedDepartment", "default_home",
           "parse_enrollment_code", "ENROLLMENT_PREFIX"]

PROBE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# "cafe-probe-enrol:<version>:<probe id>:<ed25519:… line>"; a probe id never holds ":" (PROBE_ID_RE).
ENROLLMENT_PREFIX = "cafe-probe-enrol"
ENROLLMENT_VERSION = "1"
MAX_ENROLLMENT_CHARS = 200  # a QR code of version 10 or so, readable off a small screen or a label
DEPARTMENT_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")


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


@dataclass(frozen=True)
class PinnedDepartment:
    """A department key the probe accepts task packs from."""

    name: str
    public_key: Ed25519PublicKey
    key_id: str
    pinned_at: str


def parse_enrollment_code(text: str) -> tuple[str, Ed25519PublicKey]:
    """``(probe_id, public_key)`` from an enrolment code; HomeError with a one-line reason otherwise."""
    text = text.strip()
    if len(text) > MAX_ENROLLMENT_CHARS:
        raise HomeError(f"登记码过长，不是探针登记码 / too long for an enrollment code ({len(text)} characters)")
    parts = text.split(":", 3)
    if len(parts) != 4 or parts[0] != ENROLLMENT_PREFIX:
        raise HomeError(f"不是探针登记码（应以 {ENROLLMENT_PREFIX}: 开头）/ not a probe enrollment code "
                        f"(expected {ENROLLMENT_PREFIX}:{ENROLLMENT_VERSION}:<probe id>:ed25519:…)")
    _, version, probe_id, key_text = parts
    if version != ENROLLMENT_VERSION:
        raise HomeError(f"不支持的登记码版本 {version!r} / unsupported enrollment code version {version!r}, "
                        f"expected {ENROLLMENT_VERSION}")
    if not PROBE_ID_RE.match(probe_id):
        raise HomeError(f"登记码中的探针编号无效 / enrollment code: invalid probe id {probe_id!r}")
    if not key_text.startswith(LINE_PREFIX):
        raise HomeError(f"登记码中的公钥应为 {LINE_PREFIX}… / enrollment code: the key must be an {LINE_PREFIX}… line")
    try:
        key = parse_public_key(key_text)
    except KeyFileError as exc:
        raise HomeError(f"登记码中的公钥无效 / enrollment code: bad key: {exc}") from None
    return probe_id, key


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

    @property
    def departments_path(self) -> Path:
        return self.root / "departments.json"

    @property
    def staged_path(self) -> Path:
        return self.root / "staged"

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

    def enrollment_code(self) -> str:
        """The one-line code a technician enrols this probe with: its id and public key, nothing secret."""
        ident = self.identity()
        return f"{ENROLLMENT_PREFIX}:{ENROLLMENT_VERSION}:{ident.probe_id}:{public_line(ident.public_key)}"

    def pinned_departments(self) -> list[PinnedDepartment]:
        """The pinned department keys, in the order pinned; key ids are recomputed from the keys."""
        if not self.departments_path.exists():
            return []
        try:
            doc = json.loads(self.departments_path.read_text(encoding="utf-8"))
            if not isinstance(doc, list):
                raise TypeError("not a list")
            found = []
            for entry in doc:
                key = parse_public_key(entry["public_key"])
                name = entry["name"]
                if not isinstance(name, str) or not DEPARTMENT_NAME_RE.match(name):
                    raise ValueError(f"bad name {name!r}")
                found.append(PinnedDepartment(name=name, public_key=key, key_id=key_id(key),
                                              pinned_at=str(entry.get("pinned_at", ""))))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HomeError(f"{self.departments_path}: 部门公钥记录无效 / invalid department key record "
                            f"({exc})") from None
        return found

    def departments(self) -> dict[str, Ed25519PublicKey]:
        """``{key id: public key}`` of the department keys task packs may be signed by."""
        return {d.key_id: d.public_key for d in self.pinned_departments()}

    def _write_departments(self, entries: list[PinnedDepartment]) -> None:
        doc = [{"name": d.name, "public_key": public_line(d.public_key), "key_id": d.key_id,
                "pinned_at": d.pinned_at} for d in entries]
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.departments_path, json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8") + b"\n")

    def pin_department(self, public_key_text: str, name: str) -> PinnedDepartment:
        """Trust task packs signed by this department key (PEM or ``ed25519:…``); keeps the keys pinned before.

        Pinning a key already pinned only renames it, so a rotation is: pin the
        new key, stage the new packs, unpin the old key.
        """
        name = name.strip()
        if not DEPARTMENT_NAME_RE.match(name):
            raise HomeError("部门名称须为 1–100 个可见字符 / department name must be 1–100 printable characters")
        try:
            key = parse_public_key(public_key_text)
        except KeyFileError as exc:
            raise HomeError(f"部门公钥 / department key: {exc}") from None
        pinned = PinnedDepartment(name=name, public_key=key, key_id=key_id(key),
                                  pinned_at=datetime.now(ZoneInfo("Asia/Shanghai")).isoformat(timespec="seconds"))
        entries = self.pinned_departments()
        for i, old in enumerate(entries):
            if old.key_id == pinned.key_id:
                pinned = PinnedDepartment(name=name, public_key=key, key_id=old.key_id, pinned_at=old.pinned_at)
                entries[i] = pinned
                break
        else:
            entries.append(pinned)
        self._write_departments(entries)
        return pinned

    def unpin_department(self, key_id_prefix: str) -> PinnedDepartment:
        """Stop trusting the one pinned department key whose id starts with ``key_id_prefix``."""
        prefix = key_id_prefix.strip().lower()
        entries = self.pinned_departments()
        hits = [d for d in entries if prefix and d.key_id.startswith(prefix)]
        if not hits:
            raise HomeError(f"没有以 {prefix!r} 开头的部门密钥 / no pinned department key id starts with {prefix!r}")
        if len(hits) > 1:
            raise HomeError(f"{prefix!r} 对应多个部门密钥，请写长一些 / {prefix!r} matches {len(hits)} department "
                            "keys; give more of the key id")
        self._write_departments([d for d in entries if d.key_id != hits[0].key_id])
        return hits[0]
