"""The signed findings report (DESIGN.md section 6) and the agent's receipt for it.

The payload is a pydantic model serialised once to canonical bytes (sorted
keys, no spaces, UTF-8); those bytes are what is signed, stored, hashed into
receipts and handed on after verification. Report id, venue, task and times
are inside the signed payload because DSSE has no replay protection of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from probe.dsse import EnvelopeError, sign_envelope, verify_envelope
from probe.findings import Finding, Status
from probe.keys import key_id
from probe.observations import ClockCheck

__all__ = [
    "REPORT_TYPE", "RECEIPT_TYPE", "REPORT_SCHEMA", "RECEIPT_SCHEMA", "REPORT_FILE", "MAX_PAYLOAD_BYTES",
    "ReportError", "ReportPayload", "Receipt", "VerifiedReport", "EvidenceFile", "ProbeRef", "VenueRef",
    "TaskRef", "RulesetRef", "canonical_bytes", "file_sha256", "evidence_entries", "sign_report",
    "verify_report", "verify_report_file", "sign_receipt", "verify_receipt", "write_atomic",
]

REPORT_TYPE = "application/vnd.cafe-probe.report+json"
RECEIPT_TYPE = "application/vnd.cafe-probe.receipt+json"
REPORT_SCHEMA = "cafe-probe.report/1"
RECEIPT_SCHEMA = "cafe-probe.receipt/1"
REPORT_FILE = "report.dsse.json"
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]


def _plain_name(name: str) -> str:
    """Evidence files sit beside the envelope: a bare file name, nothing that walks elsewhere."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name or len(name) > 128:
        raise ValueError(f"not a plain file name: {name!r}")
    return name


class ReportError(ValueError):
    """A report or receipt failed verification; the message is one line saying what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeRef(_Strict):
    """The probe that ran and signed: its id and the key id of its signing key."""

    id: ShortText
    key_id: Sha256Hex
    tool_version: ShortText


class VenueRef(_Strict):
    """The venue as registered in the profile."""

    id: ShortText
    name: ShortText
    credit_code: str | None = None
    address: Annotated[str, StringConstraints(max_length=300)] | None = None


class TaskRef(_Strict):
    """The inspection task: task number and the inspectors' badge numbers (empty when run by hand)."""

    id: ShortText | None = None
    inspectors: list[ShortText] = Field(default_factory=list, max_length=20)


class RulesetRef(_Strict):
    """The rulebook the findings were judged with."""

    version: ShortText
    sha256: Sha256Hex


class EvidenceFile(_Strict):
    """One file written by the run, beside the envelope, by name and digest."""

    name: Annotated[str, AfterValidator(_plain_name)]
    sha256: Sha256Hex
    size: int = Field(ge=0)


class ReportPayload(_Strict):
    """What the probe signs."""

    schema_version: Literal["cafe-probe.report/1"] = REPORT_SCHEMA
    report_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    run_id: ShortText
    probe: ProbeRef
    venue: VenueRef
    task: TaskRef = Field(default_factory=TaskRef)
    started_at: AwareDatetime
    ended_at: AwareDatetime
    timezone: ShortText
    complete: bool
    # Why a run is incomplete ("" when complete), and the probe's clock as the self-test judged it: both
    # for the officers, who must not take an interrupted run or a run with a wrong clock as clean.
    incomplete_reason: Annotated[str, StringConstraints(max_length=500)] = ""
    clock: ClockCheck | None = None
    task_pack: Annotated[str, StringConstraints(max_length=64)] | None = None
    ruleset: RulesetRef
    profile_sha256: Sha256Hex
    observations_sha256: Sha256Hex
    evidence: list[EvidenceFile] = Field(max_length=64)
    findings: list[Finding] = Field(max_length=200)
    counts: dict[Status, int]

    def consistency_problem(self) -> str | None:
        """What, if anything, contradicts itself inside the payload."""
        if self.complete == bool(self.incomplete_reason):
            return "complete 与 incomplete_reason 矛盾 / complete and incomplete_reason contradict each other"
        if self.ended_at < self.started_at:
            return "结束时间早于开始时间 / ended_at is before started_at"
        names = [e.name for e in self.evidence]
        if len(set(names)) != len(names):
            return "证据文件重名 / an evidence file is listed twice"
        obs = next((e for e in self.evidence if e.name == "observations.json"), None)
        if obs is None or obs.sha256 != self.observations_sha256:
            return "observations_sha256 与证据清单不符 / observations_sha256 does not match the evidence list"
        tally = Counter(f.status for f in self.findings)
        if any(self.counts.get(s, 0) != tally.get(s, 0) for s in Status):
            return "按状态计数与结论不符 / counts by status do not match the findings"
        return None


class Receipt(_Strict):
    """What the inspector device signs back: this report, with this digest, is stored as this record."""

    schema_version: Literal["cafe-probe.receipt/1"] = RECEIPT_SCHEMA
    report_id: str
    report_sha256: Sha256Hex
    probe_key_id: Sha256Hex
    agent_key_id: Sha256Hex
    record: int = Field(ge=1)
    received_at: AwareDatetime


@dataclass(frozen=True)
class VerifiedReport:
    """A report whose signature, type, schema and internal consistency were checked."""

    payload: ReportPayload
    payload_bytes: bytes
    sha256: str
    key_id: str


def canonical_bytes(model: BaseModel) -> bytes:
    """The one serialisation of a model: JSON, sorted keys, no insignificant spaces, UTF-8."""
    return json.dumps(model.model_dump(mode="json"), ensure_ascii=False, sort_keys=True,
                      separators=(",", ":")).encode("utf-8")


def file_sha256(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def evidence_entries(directory: Path, names: list[str]) -> list[EvidenceFile]:
    """Digest entries for the named files in ``directory`` (files that do not exist are skipped)."""
    entries = []
    for name in names:
        path = directory / name
        if path.is_file():
            sha, size = file_sha256(path)
            entries.append(EvidenceFile(name=name, sha256=sha, size=size))
    return entries


def new_report_id() -> str:
    """A fresh report id (UUID 4)."""
    return str(uuid.uuid4())


def sign_report(payload: ReportPayload, private_key: Ed25519PrivateKey) -> bytes:
    """The DSSE envelope (JSON bytes) over the payload's canonical bytes."""
    if payload.probe.key_id != key_id(private_key.public_key()):
        raise ReportError("载荷中的 key_id 与签名私钥不符 / the payload's key_id is not the signing key's")
    problem = payload.consistency_problem()
    if problem:
        raise ReportError(problem)
    return sign_envelope(REPORT_TYPE, canonical_bytes(payload), private_key)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top)"
    return f"{where}: {err['msg']}"


def verify_report(envelope: bytes, keys: dict[str, Ed25519PublicKey]) -> VerifiedReport:
    """Verify signature, payload type, schema and consistency; raise ReportError with one line."""
    try:
        verified = verify_envelope(envelope, keys, REPORT_TYPE)
    except EnvelopeError as exc:
        raise ReportError(str(exc)) from None
    if len(verified.payload) > MAX_PAYLOAD_BYTES:
        raise ReportError(f"载荷过大 / payload larger than {MAX_PAYLOAD_BYTES // (1024 * 1024)} MiB")
    try:
        payload = ReportPayload.model_validate_json(verified.payload)
    except ValidationError as exc:
        raise ReportError(f"载荷不符合报告格式 / payload is not a valid report: {_first_error(exc)}") from None
    if payload.probe.key_id != verified.key_id:
        raise ReportError("载荷中的 key_id 与签名密钥不符 / the payload names another key than the one that signed")
    problem = payload.consistency_problem()
    if problem:
        raise ReportError(problem)
    return VerifiedReport(payload=payload, payload_bytes=verified.payload,
                          sha256=hashlib.sha256(verified.payload).hexdigest(), key_id=verified.key_id)


@dataclass(frozen=True)
class EvidenceCheck:
    """What was found of each evidence file beside the envelope."""

    matched: list[str]
    absent: list[str]


def verify_report_file(path: Path, public_key: Ed25519PublicKey) -> tuple[VerifiedReport, EvidenceCheck]:
    """Verify an envelope file and the evidence files present beside it; raise ReportError on any mismatch."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReportError(f"无法读取 / cannot read {path}: {exc.strerror}") from None
    report = verify_report(data, {key_id(public_key): public_key})
    matched, absent = [], []
    for entry in report.payload.evidence:
        beside = path.parent / entry.name
        if not beside.is_file():
            absent.append(entry.name)
            continue
        sha, size = file_sha256(beside)
        if sha != entry.sha256 or size != entry.size:
            raise ReportError(f"证据文件已被改动 / evidence file {entry.name} does not match its SHA-256 "
                              f"(expected {entry.sha256[:16]}…, found {sha[:16]}…)")
        matched.append(entry.name)
    return report, EvidenceCheck(matched=matched, absent=absent)


def sign_receipt(receipt: Receipt, private_key: Ed25519PrivateKey) -> bytes:
    """The agent's DSSE envelope over a receipt."""
    return sign_envelope(RECEIPT_TYPE, canonical_bytes(receipt), private_key)


def verify_receipt(envelope: bytes, agent_key: Ed25519PublicKey, report: VerifiedReport | None = None) -> Receipt:
    """Verify a receipt against the pinned agent key and, when given, the report it must acknowledge."""
    try:
        verified = verify_envelope(envelope, {key_id(agent_key): agent_key}, RECEIPT_TYPE)
    except EnvelopeError as exc:
        raise ReportError(f"回执 / receipt: {exc}") from None
    try:
        receipt = Receipt.model_validate_json(verified.payload)
    except ValidationError as exc:
        raise ReportError(f"回执格式无效 / receipt is malformed: {_first_error(exc)}") from None
    if report is not None and (receipt.report_id != report.payload.report_id or receipt.report_sha256 != report.sha256):
        raise ReportError("回执所指并非本报告 / the receipt acknowledges another report or digest")
    return receipt


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a file so that a crash or power loss leaves the old state or the new one, never half.

    Temporary file in the same directory, fsync, rename, fsync of the directory. ``mode`` holds from the
    first byte on (0o600 for anything secret).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as fh:
        os.fchmod(fh.fileno(), mode)  # a stale temporary of another mode, or the umask, must not widen it
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
