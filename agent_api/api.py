"""The JSON API under /v1: probe enrollment, report submission, cases and exports.

Refusals of ``POST /v1/reports`` (nothing is stored in ``reports`` for any of them):

====  =====================  ==============================================================
413   too_large              body over 8 MiB (Content-Length, or counted while streaming)
400   malformed              not JSON, not a DSSE envelope, bad base64, bad Content-Length
415   wrong_payload_type     a valid envelope of another payload type
403   unknown_key            no signature by an enrolled key
403   revoked_key            signed only by revoked keys
400   bad_signature          enrolled key, but the signature does not verify: the payload or
                             signature bytes were altered (the request is damaged, not
                             unauthorised; a retry of the same bytes cannot succeed)
422   invalid_report         verified signature, but the payload breaks the schema or
                             contradicts itself, or names another probe than the key's
409   replayed_id            the report id is stored with another SHA-256 (audited)
====  =====================  ==============================================================

A new report answers 201 with the signed receipt; the same report again
answers 200 with the very same receipt bytes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from agent_api import ApiError, casefile, ocsf
from agent_api.audit import now, officer_actor, probe_actor, record
from agent_api.auth import enroll_probe, require_officer, revoke_probe
from agent_api.cases import (CaseView, ReportSummary, list_reports, load_case, report_row, set_manual_item,
                             set_result, sign_off)
from agent_api.db import Officer, Probe, Report, get_db
from probe.dsse import MAX_ENVELOPE_BYTES, EnvelopeError, parse_envelope, verify_envelope
from probe.keys import key_id, parse_public_key, public_line
from probe.report import REPORT_TYPE, Receipt, ReportError, VerifiedReport, sign_receipt, verify_report

__all__ = ["router", "accept_report", "read_limited", "export_case", "Export", "EXPORT_FORMATS"]

router = APIRouter(prefix="/v1")
JSON = "application/json"


# ----------------------------------------------------------------------- submission


async def read_limited(request: Request, limit: int = MAX_ENVELOPE_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``.

    A declared Content-Length over the limit is refused before a byte is read;
    otherwise the stream is counted as it arrives and dropped past the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "malformed", "Content-Length 无效 / invalid Content-Length")
        if int(declared) > limit:
            raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> ApiError:
    # Connection: close makes the server drop the connection after answering,
    # instead of reading (and discarding) the rest of the body to keep it alive.
    return ApiError(413, "too_large", f"报告过大（上限 {limit // (1024 * 1024)} MiB）/ report larger than "
                                      f"{limit // (1024 * 1024)} MiB", headers={"Connection": "close"})


def _trusted_keys(db: Session, key_ids: set[str]) -> dict[str, Probe]:
    """The enrolled, unrevoked probes among the envelope's key ids; 403 when there is none."""
    probes = db.execute(select(Probe).where(Probe.key_id.in_(key_ids))).scalars().all()
    active = {p.key_id: p for p in probes if p.revoked_at is None}
    if active:
        return active
    if probes:
        raise ApiError(403, "revoked_key", "签名密钥已吊销 / the signing key has been revoked")
    raise ApiError(403, "unknown_key", "签名密钥未登记 / the report is not signed by an enrolled probe key")


def _verify(db: Session, body: bytes) -> tuple[VerifiedReport, Probe]:
    """Every check of a submission, cheapest and least trusting first; raises ApiError."""
    try:
        payload_type, _payload, signatures = parse_envelope(body)
    except EnvelopeError as exc:
        raise ApiError(400, "malformed", str(exc)) from None
    if payload_type != REPORT_TYPE:
        raise ApiError(415, "wrong_payload_type",
                       f"载荷类型不是报告 / payload type {payload_type[:100]!r} is not {REPORT_TYPE}")
    probes = _trusted_keys(db, {kid for kid, _ in signatures})
    keys = {kid: parse_public_key(p.public_key) for kid, p in probes.items()}
    try:
        report = verify_report(body, keys)
    except ReportError as exc:
        # Which step failed: the signature (damaged bytes) or what was signed?
        # Asked only on failure, so that a good report is verified once.
        try:
            signer = verify_envelope(body, keys, REPORT_TYPE).key_id
        except EnvelopeError as bad:
            raise ApiError(400, "bad_signature", str(bad)) from None
        # The signer is known from here on: keep a trace of what it sent.
        _refuse(db, probe_actor(signer), signer, {"reason": str(exc)})
        raise ApiError(422, "invalid_report", str(exc)) from None
    probe = probes[report.key_id]
    if report.payload.probe.id != probe.probe_id:
        message = (f"载荷中的探针编号与登记不符 / the payload names probe {report.payload.probe.id!r}, "
                   f"the key is enrolled for {probe.probe_id!r}")
        _refuse(db, probe_actor(report.key_id), report.payload.report_id, {"reason": message})
        raise ApiError(422, "invalid_report", message)
    return report, probe


def _refuse(db: Session, actor: str, subject: str, detail: dict) -> None:
    record(db, actor, "report.refuse", subject, detail)
    db.commit()


def _answer_stored(db: Session, stored: Report, report: VerifiedReport) -> tuple[int, bytes]:
    """A report id seen before: the same receipt for the same digest, 409 for another."""
    actor = probe_actor(report.key_id)
    if stored.sha256 == report.sha256:
        record(db, actor, "report.duplicate", stored.report_id, {"sha256": report.sha256, "record": stored.id})
        db.commit()
        return 200, stored.receipt
    _refuse(db, actor, stored.report_id, {"reason": "replayed_id", "offered_sha256": report.sha256,
                                          "stored_sha256": stored.sha256})
    raise ApiError(409, "replayed_id", "该报告编号已存有不同内容 / this report id is stored with other content "
                                       f"(stored SHA-256 {stored.sha256[:16]}…)")


def accept_report(db: Session, agent_key: Ed25519PrivateKey, body: bytes) -> tuple[int, bytes]:
    """Verify and store a submitted envelope; returns (201 or 200, receipt envelope bytes) or raises ApiError."""
    report, probe = _verify(db, body)
    p = report.payload
    find = select(Report).where(Report.report_id == p.report_id)
    stored = db.execute(find).scalar_one_or_none()
    if stored is not None:
        return _answer_stored(db, stored, report)
    received = now(db)
    row = Report(report_id=p.report_id, sha256=report.sha256, probe_key_id=probe.key_id, envelope=body,
                 payload=report.payload_bytes, venue_id=p.venue.id, venue_name=p.venue.name, task_id=p.task.id,
                 started_at=p.started_at, ended_at=p.ended_at, received_at=received, receipt=b"")
    db.add(row)
    try:
        db.flush()  # assigns the record number the receipt names
    except IntegrityError:
        # The same id committed by a concurrent request (PostgreSQL; SQLite serialises writers).
        db.rollback()
        return _answer_stored(db, db.execute(find).scalar_one(), report)
    row.receipt = sign_receipt(Receipt(report_id=p.report_id, report_sha256=report.sha256, probe_key_id=probe.key_id,
                                       agent_key_id=key_id(agent_key.public_key()), record=row.id,
                                       received_at=received), agent_key)
    record(db, probe_actor(probe.key_id), "report.accept", p.report_id,
           {"sha256": report.sha256, "record": row.id, "venue_id": p.venue.id, "probe_id": probe.probe_id})
    db.commit()
    return 201, row.receipt


@router.post("/reports", status_code=201, tags=["probes"],
             responses={200: {"description": "the same report again: the stored receipt"},
                        **{c: {"description": d} for c, d in [(400, "malformed or bad signature"),
                                                               (403, "unknown or revoked key"),
                                                               (409, "report id stored with other content"),
                                                               (413, "body over 8 MiB"),
                                                               (415, "not a report envelope"),
                                                               (422, "schema or consistency")]}})
async def submit_report(request: Request) -> Response:
    """Submit a DSSE envelope (the body, as bytes); the signature is the authentication.

    Answers with the agent's signed receipt envelope (201 new, 200 already stored).
    """
    body = await read_limited(request)
    state = request.app.state

    def work() -> tuple[int, bytes]:
        # Submissions write one at a time anyway (SQLite has one writer);
        # queueing them on a lock here lets the waiting threads sleep instead
        # of polling for the database lock and contending for the GIL.
        with state.submit_lock, state.sessions() as db:
            return accept_report(db, state.agent_key, body)

    status, receipt = await run_in_threadpool(work)
    return Response(receipt, status_code=status, media_type=JSON)


# ----------------------------------------------------------------------- probes


class EnrollRequest(BaseModel):
    """A probe to enroll: its id, its public key (``ed25519:`` line or PEM) and a label for people."""

    probe_id: str = Field(max_length=200)
    public_key: str = Field(max_length=4096)
    label: str = Field(default="", max_length=200)


class ProbeOut(BaseModel):
    """An enrolled probe."""

    probe_id: str
    key_id: str
    public_key: str
    label: str
    enrolled_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, p: Probe) -> ProbeOut:
        """The API view of a Probe row."""
        return cls(probe_id=p.probe_id, key_id=p.key_id, public_key=p.public_key, label=p.label,
                   enrolled_at=p.enrolled_at, revoked_at=p.revoked_at)


@router.post("/probes", status_code=201, tags=["probes"])
def post_probe(body: EnrollRequest, officer: Officer = Depends(require_officer),
               db: Session = Depends(get_db)) -> ProbeOut:
    """Enroll a probe's public key (officers only); 409 when the key or probe id is enrolled already."""
    return ProbeOut.of(enroll_probe(db, body.probe_id, body.public_key, body.label, officer))


@router.get("/probes", tags=["probes"])
def get_probes(officer: Officer = Depends(require_officer), db: Session = Depends(get_db)) -> list[ProbeOut]:
    """Every enrolled probe, revoked ones included."""
    return [ProbeOut.of(p) for p in db.execute(select(Probe).order_by(Probe.id)).scalars()]


@router.post("/probes/{probe_id}/revoke", tags=["probes"])
def post_revoke(probe_id: str, officer: Officer = Depends(require_officer), db: Session = Depends(get_db)) -> ProbeOut:
    """Revoke a probe's key: its later reports are refused (403), stored ones stay."""
    return ProbeOut.of(revoke_probe(db, probe_id, officer))


@router.get("/agent/key", tags=["agent"])
def get_agent_key(request: Request) -> dict[str, str]:
    """The agent's public key (one line) and key id, for a technician to pin in the probes."""
    pub = request.app.state.agent_key.public_key()
    return {"public_key": public_line(pub), "key_id": key_id(pub)}


@router.get("/time", tags=["agent"])
def get_time(request: Request, response: Response) -> dict[str, str | float]:
    """The device's clock, for a probe's self-test to measure its offset (no login: the time is not secret).

    ``unix`` and ``now`` are one reading; ``no-store`` keeps a cache from answering with a stale time.
    """
    unix = time.time()
    response.headers["Cache-Control"] = "no-store"
    at = datetime.fromtimestamp(unix, request.app.state.settings.zone)
    return {"now": at.isoformat(timespec="microseconds"), "unix": unix}


# ----------------------------------------------------------------------- cases


@router.get("/reports", tags=["cases"])
def get_reports(limit: int = Query(200, ge=1, le=1000), offset: int = Query(0, ge=0),
                officer: Officer = Depends(require_officer), db: Session = Depends(get_db)) -> list[ReportSummary]:
    """Stored reports, newest received first."""
    return list_reports(db, limit, offset)


@router.get("/reports/{report_id}", tags=["cases"])
def get_case(report_id: str, officer: Officer = Depends(require_officer), db: Session = Depends(get_db)) -> CaseView:
    """The case view of one report."""
    return load_case(db, report_id)


@router.get("/reports/{report_id}/envelope", tags=["cases"])
def get_envelope(report_id: str, officer: Officer = Depends(require_officer), db: Session = Depends(get_db)) -> Response:
    """The envelope exactly as the probe sent it (verify it offline with ``cafe-probe verify``)."""
    row = report_row(db, report_id)
    return Response(row.envelope, media_type=JSON,
                    headers={"Content-Disposition": f'attachment; filename="{report_id}.dsse.json"'})


class ManualItemRequest(BaseModel):
    """A manual item's result."""

    status: Literal["pass", "fail", "not_applicable"]
    note: str = Field(default="", max_length=2000)


class ResultRequest(BaseModel):
    """The official result type (code of rules/result_types.yaml) and a note."""

    result_type: str = Field(max_length=100)
    note: str = Field(default="", max_length=2000)


@router.put("/reports/{report_id}/manual/{item_id}", tags=["cases"])
def put_manual_item(report_id: str, item_id: str, body: ManualItemRequest,
                    officer: Officer = Depends(require_officer), db: Session = Depends(get_db)) -> CaseView:
    """Record a manual item; 409 once the case is locked."""
    set_manual_item(db, report_id, item_id, body.status, body.note, officer)
    return load_case(db, report_id)


@router.put("/reports/{report_id}/result", tags=["cases"])
def put_result(report_id: str, body: ResultRequest, officer: Officer = Depends(require_officer),
               db: Session = Depends(get_db)) -> CaseView:
    """Choose the official result type; 409 once the case is locked."""
    set_result(db, report_id, body.result_type, body.note, officer)
    return load_case(db, report_id)


@router.post("/reports/{report_id}/signoff", tags=["cases"])
def post_signoff(report_id: str, officer: Officer = Depends(require_officer), db: Session = Depends(get_db)) -> CaseView:
    """Sign the case; the second distinct officer's sign-off locks it."""
    sign_off(db, report_id, officer)
    return load_case(db, report_id)


# ----------------------------------------------------------------------- exports

EXPORT_FORMATS = ("json", "ocsf", "pdf")


@dataclass(frozen=True)
class Export:
    """An exported case file: its bytes, media type and a file name."""

    content: bytes
    media_type: str
    filename: str


def _json_bytes(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


def export_case(db: Session, report_id: str, fmt: str, actor: str) -> Export:
    """Render a case as ``json`` (case view + the envelope), ``ocsf`` or ``pdf``; records an 'export' entry."""
    if fmt not in EXPORT_FORMATS:
        raise ApiError(422, "bad_format", f"格式须为 {'/'.join(EXPORT_FORMATS)} / format must be one of "
                                          f"{', '.join(EXPORT_FORMATS)}")
    case = load_case(db, report_id)
    envelope = report_row(db, report_id).envelope
    # End the read before rendering: a PDF takes a second or more, and on SQLite
    # every transaction here holds the write lock (agent_api.db), so a long one
    # would hold up the probes' submissions.
    db.commit()
    if fmt == "json":
        doc = {"schema_version": "cafe-agent.case/1", "case": case.model_dump(mode="json"),
               "envelope": json.loads(envelope)}
        out = Export(_json_bytes(doc), JSON, f"{report_id}.case.json")
    elif fmt == "ocsf":
        out = Export(_json_bytes(ocsf.case_events(case)), JSON, f"{report_id}.ocsf.json")
    else:
        out = Export(casefile.render_casefile_pdf(case), "application/pdf", f"{report_id}.pdf")
    record(db, actor, "export", report_id, {"format": fmt, "bytes": len(out.content)})
    db.commit()
    return out


def _download(db: Session, report_id: str, fmt: str, officer: Officer) -> Response:
    out = export_case(db, report_id, fmt, officer_actor(officer))
    return Response(out.content, media_type=out.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{out.filename}"'})


@router.get("/reports/{report_id}/export.json", tags=["exports"])
def get_export_json(report_id: str, officer: Officer = Depends(require_officer),
                    db: Session = Depends(get_db)) -> Response:
    """The case as JSON, with the probe's envelope so that a reader can verify it offline."""
    return _download(db, report_id, "json", officer)


@router.get("/reports/{report_id}/export.ocsf.json", tags=["exports"])
def get_export_ocsf(report_id: str, officer: Officer = Depends(require_officer),
                    db: Session = Depends(get_db)) -> Response:
    """The findings as OCSF 1.x Compliance Finding events (class 2003), a JSON array."""
    return _download(db, report_id, "ocsf", officer)


@router.get("/reports/{report_id}/casefile.pdf", tags=["exports"])
def get_casefile(report_id: str, officer: Officer = Depends(require_officer),
                 db: Session = Depends(get_db)) -> Response:
    """The case file 现场检查记录 as a PDF."""
    return _download(db, report_id, "pdf", officer)
