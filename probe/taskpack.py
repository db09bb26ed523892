"""Task packs: what the department server hands a probe for one round, signed and partly sealed.

A pack is a DSSE envelope (payload type :data:`PACK_TYPE`) signed with the
department's Ed25519 key. Its payload names the probe it is for (id and key
id), a validity window, the task and, for each venue assigned to the probe's
officers, the venue profile as the technician wrote it and the team's badge
numbers, plus the inspector device to report to and the ruleset the round
uses. The files a profile names as secrets (SSH passwords and keys, SNMP
communities and v3 keys) are never in the clear: per venue they travel in a
libsodium sealed box to the probe's key, so only that probe can open them and
the department server keeps no way to.

Why one key pair on the probe for signing and sealing: the probe makes one
Ed25519 pair and enrols only its public half; the sealing key is the X25519
form of the same pair (libsodium's ``crypto_sign_ed25519_pk_to_curve25519``,
the conversion age uses for ssh-ed25519 recipients). Using one pair for
Ed25519 signatures and X25519 key agreement is analysed as safe (Thormarker,
"On using the same key pair for Ed25519 and an X25519 based KEM", 2021), and it
keeps enrolment one QR-sized line with nothing secret in it.

:func:`open_pack` checks, in this order, each failure a one-line
:class:`PackRefused`: envelope shape and size, signer among the trusted
department keys, signature over the exact bytes, schema, addressed to this
probe (id and key), validity window, and that every sealed box opens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import nacl.bindings
import nacl.exceptions
import nacl.public
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from probe.dsse import EnvelopeError, sign_envelope, verify_envelope
from probe.keys import KeyFileError, key_id, parse_public_key, raw_public
from probe.profile import VenueProfile
from probe.report import write_atomic

__all__ = ["PACK_TYPE", "PACK_SCHEMA", "MAX_PACK_BYTES", "PackRefused", "PackAgent", "PackTask", "PackVenue",
           "PackProbe", "PackIssuer", "PackRuleset", "PackPayload", "OpenedPack", "seal_secrets", "open_secrets",
           "profile_secret_files", "sign_pack", "open_pack", "write_venue"]

PACK_TYPE = "application/vnd.cafe-probe.taskpack+json"
PACK_SCHEMA = "cafe-probe.taskpack/1"
MAX_PACK_BYTES = 4 * 1024 * 1024   # a round's profiles are a few KiB each; far more is not a pack of ours
MAX_SECRET_BYTES = 64 * 1024       # one password, key or community file
SHANGHAI = ZoneInfo("Asia/Shanghai")  # refusal times for the technician, in the zone of the round

Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class PackRefused(ValueError):
    """The probe will not stage this pack; the message is one line (Chinese / English)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PackIssuer(_Model):
    """Who signed: the department's name and its key id."""

    name: Text
    key_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class PackProbe(_Model):
    """The one probe that may stage the pack."""

    id: Text
    key_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class PackTask(_Model):
    """The round: task number and name, check type and the check period (dates in the venue's zone)."""

    id: Text
    name: Annotated[str, StringConstraints(max_length=200)] = ""
    check_type: Annotated[str, StringConstraints(max_length=32)] = ""
    check_start: str | None = None
    check_end: str | None = None


class PackAgent(_Model):
    """The inspector device the reports go to, with its receipt key pinned."""

    url: Annotated[str, StringConstraints(min_length=8, max_length=500)]
    public_key: Annotated[str, StringConstraints(min_length=1, max_length=200)]  # ed25519:… line
    key_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class PackRuleset(_Model):
    """The ruleset the department expects the probe to judge by."""

    version: Text
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class PackVenue(_Model):
    """One venue the probe may find itself in."""

    venue_id: Text
    name: Annotated[str, StringConstraints(max_length=200)] = ""
    credit_code: Annotated[str, StringConstraints(max_length=32)] = ""
    inspectors: list[Text] = Field(default_factory=list, max_length=20)  # the team's badge numbers
    profile_yaml: Annotated[str, StringConstraints(min_length=1, max_length=512 * 1024)]
    profile_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    secret_paths: list[Text] = Field(default_factory=list, max_length=64)  # names only; contents are sealed
    secrets_sealed: str | None = None  # base64 of a sealed box to the probe's key


class PackPayload(_Model):
    """The signed content of a task pack."""

    schema_version: Literal["cafe-probe.taskpack/1"] = PACK_SCHEMA
    pack_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    issued_at: AwareDatetime
    not_before: AwareDatetime
    not_after: AwareDatetime
    issuer: PackIssuer
    probe: PackProbe
    task: PackTask
    agent: PackAgent
    ruleset: PackRuleset
    venues: list[PackVenue] = Field(min_length=1, max_length=200)

    @staticmethod
    def new_id() -> str:
        """A fresh pack id (UUID 4)."""
        return str(uuid.uuid4())


@dataclass(frozen=True)
class OpenedPack:
    """A verified pack: the payload, its exact signed bytes and digest, and the opened secrets per venue."""

    payload: PackPayload
    payload_bytes: bytes
    sha256: str
    signer_key_id: str
    secrets: dict[str, dict[str, bytes]]  # venue id -> relative path -> content

    def venue(self, venue_id: str) -> PackVenue:
        """The pack's entry for one venue (KeyError when it holds no such venue)."""
        for v in self.payload.venues:
            if v.venue_id == venue_id:
                return v
        raise KeyError(venue_id)


# -- the probe's sealing key ------------------------------------------------------------------------------------

def _box_public(probe_key: Ed25519PublicKey) -> nacl.public.PublicKey:
    return nacl.public.PublicKey(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(raw_public(probe_key)))


def _box_private(probe_key: Ed25519PrivateKey) -> nacl.public.PrivateKey:
    seed = probe_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                   serialization.NoEncryption())
    _, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
    return nacl.public.PrivateKey(nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(secret))


def seal_secrets(files: dict[str, bytes], probe_key: Ed25519PublicKey) -> str:
    """Seal ``{relative path: content}`` to the probe's key; base64 text of the sealed box."""
    doc = {"files": {name: base64.standard_b64encode(data).decode("ascii") for name, data in sorted(files.items())}}
    sealed = nacl.public.SealedBox(_box_public(probe_key)).encrypt(json.dumps(doc, sort_keys=True).encode("utf-8"))
    return base64.standard_b64encode(sealed).decode("ascii")


def open_secrets(sealed: str, probe_key: Ed25519PrivateKey) -> dict[str, bytes]:
    """Open a sealed box made by :func:`seal_secrets`; raises PackRefused when it is not for this key."""
    try:
        box = base64.b64decode(sealed, validate=True)
        plain = nacl.public.SealedBox(_box_private(probe_key)).decrypt(box)
        doc = json.loads(plain)
        files = doc["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not a mapping")
        return {str(name): base64.b64decode(data, validate=True) for name, data in files.items()}
    except nacl.exceptions.CryptoError:
        raise PackRefused("密文无法用本探针密钥解开 / the sealed secrets do not open with this probe's key") from None
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise PackRefused("密文格式错误 / the sealed secrets are malformed") from None


# -- department side ---------------------------------------------------------------------------------------------

def _safe_relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(p in ("", ".", "..") for p in path.parts) or "\\" in name:
        raise PackRefused(f"密钥文件须在档案目录之内（相对路径，不含 ..）/ a secret file must be a relative path "
                          f"inside the profile's folder: {name!r}")
    return path


def profile_secret_files(profile: VenueProfile, profile_dir: Path) -> dict[str, bytes]:
    """Every secret file the profile names, as ``{path relative to the profile's folder: content}``.

    The profile was loaded with ``profile_dir`` as its base, so each secret
    path is absolute there; one outside the folder cannot be carried in a
    pack (the probe re-creates the folder, nothing else) and is refused.
    """
    base = Path(os.path.abspath(profile_dir))
    found: dict[str, bytes] = {}

    def visit(value: object) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                visit(getattr(value, name))
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, Path):
            try:
                rel = value.relative_to(base)
            except ValueError:
                raise PackRefused(f"密钥文件不在档案目录内 / secret file outside the profile's folder: {value}") from None
            name = _safe_relative(rel.as_posix()).as_posix()
            data = value.read_bytes()
            if len(data) > MAX_SECRET_BYTES:
                raise PackRefused(f"密钥文件过大 / secret file larger than {MAX_SECRET_BYTES // 1024} KiB: {value}")
            found[name] = data

    visit(profile)
    return found


def sign_pack(payload: PackPayload, department_key: Ed25519PrivateKey) -> bytes:
    """The pack's DSSE envelope bytes, signed by the department key named in ``payload.issuer``."""
    if payload.issuer.key_id != key_id(department_key.public_key()):
        raise PackRefused("issuer.key_id 与签名密钥不符 / issuer.key_id is not the signing key's")
    if payload.not_after <= payload.not_before:
        raise PackRefused("有效期为空 / the validity window is empty")
    body = json.dumps(payload.model_dump(mode="json"), ensure_ascii=False, sort_keys=True,
                      separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_PACK_BYTES:
        raise PackRefused(f"任务包过大 / pack larger than {MAX_PACK_BYTES // (1024 * 1024)} MiB")
    return sign_envelope(PACK_TYPE, body, department_key)


# -- probe side --------------------------------------------------------------------------------------------------

def _when(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).isoformat(timespec="seconds")


def open_pack(data: bytes, trusted: dict[str, Ed25519PublicKey], probe_id: str, probe_key: Ed25519PrivateKey,
              now: datetime, skew: timedelta = timedelta(minutes=5)) -> OpenedPack:
    """Verify a pack for this probe at time ``now`` and open its secrets; PackRefused says why not.

    ``trusted`` maps department key ids to keys (pinned with ``cafe-probe
    pin-department``). ``skew`` tolerates a probe clock a little behind or
    ahead at the window's edges.
    """
    if len(data) > MAX_PACK_BYTES * 2:
        raise PackRefused(f"文件过大，不是任务包 / file too large for a task pack ({len(data)} bytes)")
    try:
        verified = verify_envelope(data, trusted, PACK_TYPE)
    except EnvelopeError as exc:
        text = str(exc)
        if "unknown key" in text:
            raise PackRefused(f"任务包由未登记的密钥签名，不是本部门签发 / pack signed by an unknown key, not a "
                              f"pinned department key ({text.split('(')[-1].rstrip(')')})") from None
        if "invalid signature" in text:
            raise PackRefused("任务包已被改动：签名不符 / pack tampered with: the signature does not match") from None
        raise PackRefused(f"不是有效的任务包 / not a valid task pack: {text}") from None
    try:
        payload = PackPayload.model_validate_json(verified.payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top)"
        raise PackRefused(f"任务包内容格式错误 / pack content malformed: {where}: {err['msg']}") from None
    own_key = key_id(probe_key.public_key())
    if payload.probe.id != probe_id or payload.probe.key_id != own_key:
        raise PackRefused(f"任务包属于另一台探针 {payload.probe.id} / pack is for another probe "
                          f"({payload.probe.id}, key {payload.probe.key_id[:12]}…), this is {probe_id} "
                          f"(key {own_key[:12]}…)")
    if now + skew < payload.not_before:
        raise PackRefused(f"任务包尚未生效（自 {_when(payload.not_before)} 起）/ pack not valid before "
                          f"{_when(payload.not_before)}")
    if now - skew > payload.not_after:
        raise PackRefused(f"任务包已过期（至 {_when(payload.not_after)} 止）/ pack expired at {_when(payload.not_after)}")
    ids = [v.venue_id for v in payload.venues]
    if len(set(ids)) != len(ids):
        raise PackRefused("任务包中场所重复 / pack lists a venue twice")
    try:
        parse_public_key(payload.agent.public_key)
    except KeyFileError as exc:
        raise PackRefused(f"任务包中的检查设备公钥无效 / the pack's inspector-device key: {exc}") from None
    secrets: dict[str, dict[str, bytes]] = {}
    for venue in payload.venues:
        if hashlib.sha256(venue.profile_yaml.encode("utf-8")).hexdigest() != venue.profile_sha256:
            raise PackRefused(f"场所 {venue.venue_id} 的档案摘要不符 / venue {venue.venue_id}: profile digest mismatch")
        files = open_secrets(venue.secrets_sealed, probe_key) if venue.secrets_sealed else {}
        for name in files:
            _safe_relative(name)
        if sorted(files) != sorted(venue.secret_paths):
            raise PackRefused(f"场所 {venue.venue_id} 的密钥文件清单不符 / venue {venue.venue_id}: sealed files differ "
                              "from the listed secret paths")
        secrets[venue.venue_id] = files
    return OpenedPack(payload=payload, payload_bytes=verified.payload,
                      sha256=hashlib.sha256(verified.payload).hexdigest(), signer_key_id=verified.key_id,
                      secrets=secrets)


def write_venue(pack: OpenedPack, venue_id: str, directory: Path) -> Path:
    """Lay one venue's profile and its secrets (mode 0600) into an empty private ``directory``; the profile's path.

    The secrets stay sealed in the staged pack; this is for the run only, into
    a directory the caller removes afterwards (the autorun uses its runtime
    directory on tmpfs).
    """
    venue = pack.venue(venue_id)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    for name, data in pack.secrets.get(venue_id, {}).items():
        target = directory / _safe_relative(name)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(data)
    profile = directory / "profile.yaml"
    write_atomic(profile, venue.profile_yaml.encode("utf-8"), mode=0o600)
    return profile
