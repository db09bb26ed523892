"""The agent's HTTP API against the real app on SQLite and PostgreSQL: argon2 hashes, Ed25519 keys, signed reports.

Every refusal of a submission is checked for its status, its error code and
that nothing was stored; the 50 MB body is checked at the ASGI boundary (how
much of the stream the app pulled) and over real HTTP against ``cafe-agent serve``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy import select

from agent_api.api import accept_report
from agent_api.db import Officer, Report
from agent_api.ocsf import CLASS_UID, TYPE_UID
from probe.dsse import sign_envelope
from probe.findings import Status
from probe.keys import key_id, load_public_key, public_line
from probe.report import REPORT_TYPE, verify_receipt
from tests.agentkit import PASSWORD, PROBE_ID, Agent, make_agent, password_hash, prepare_agent, served_agent
from tests.reportkit import make_probe_key, make_report, tamper

FIFTY_MB = 50 * 1024 * 1024
MIB = b"x" * (1024 * 1024)


@pytest.fixture()
def agent(tmp_path, db_url) -> Agent:
    """The app on a fresh database: each test runs once on SQLite and once on PostgreSQL."""
    made = make_agent(tmp_path, db_url)
    yield made
    made.app.state.agent.engine.dispose()


def test_a_good_report_gets_a_receipt_and_a_resubmission_the_same_bytes(agent):
    envelope, verified = make_report(agent.probe_key)
    first = agent.submit(envelope)
    assert first.status_code == 201, first.text
    assert first.headers["content-type"] == "application/json"
    receipt = verify_receipt(first.content, load_public_key(agent.settings.pub_path), verified)
    with agent.app.state.sessions() as db:
        row = db.execute(select(Report)).scalar_one()
    assert receipt.record == row.id and receipt.report_id == verified.payload.report_id
    assert receipt.report_sha256 == verified.sha256 == row.sha256 and receipt.probe_key_id == verified.key_id
    assert row.envelope == envelope and row.payload == verified.payload_bytes and row.receipt == first.content
    assert receipt.received_at.utcoffset().total_seconds() == 8 * 3600

    again = agent.submit(envelope)
    assert again.status_code == 200 and again.content == first.content
    assert agent.count() == 1
    assert [e.subject for e in agent.audit("report.accept")] == [verified.payload.report_id]
    assert len(agent.audit("report.duplicate")) == 1


def _flip_payload(probe_key: Ed25519PrivateKey) -> bytes:
    return tamper(make_report(probe_key)[0], "payload", 200)


def _flip_signature(probe_key: Ed25519PrivateKey) -> bytes:
    return tamper(make_report(probe_key)[0], "sig", 10)


def _unknown_key(_probe_key: Ed25519PrivateKey) -> bytes:
    return make_report(Ed25519PrivateKey.generate())[0]


def _wrong_type(probe_key: Ed25519PrivateKey) -> bytes:
    _, verified = make_report(probe_key)
    return sign_envelope("application/vnd.cafe-probe.receipt+json", verified.payload_bytes, probe_key)


def _signed_json(probe_key: Ed25519PrivateKey, doc: dict) -> bytes:
    return sign_envelope(REPORT_TYPE, json.dumps(doc, ensure_ascii=False).encode(), probe_key)


def _schema_violation(probe_key: Ed25519PrivateKey) -> bytes:
    doc = json.loads(make_report(probe_key)[1].payload_bytes)
    doc["venue"]["licence"] = "not in the schema"
    return _signed_json(probe_key, doc)


def _counts_disagree(probe_key: Ed25519PrivateKey) -> bytes:
    doc = json.loads(make_report(probe_key)[1].payload_bytes)
    doc["counts"]["fail"] += 1
    return _signed_json(probe_key, doc)


def _other_probe_id(probe_key: Ed25519PrivateKey) -> bytes:
    doc = json.loads(make_report(probe_key)[1].payload_bytes)
    doc["probe"]["id"] = "someone-else"
    return _signed_json(probe_key, doc)


REFUSALS = [
    ("flipped payload byte", _flip_payload, 400, "bad_signature"),
    ("flipped signature byte", _flip_signature, 400, "bad_signature"),
    ("unknown key", _unknown_key, 403, "unknown_key"),
    ("wrong payload type", _wrong_type, 415, "wrong_payload_type"),
    ("malformed JSON", lambda _k: b'{"payloadType": "application/vnd.cafe-probe.report+json", "payload": ', 400,
     "malformed"),
    ("not an envelope", lambda _k: b'["a", "list"]', 400, "malformed"),
    ("schema violation", _schema_violation, 422, "invalid_report"),
    ("inconsistent counts", _counts_disagree, 422, "invalid_report"),
    ("payload names another probe", _other_probe_id, 422, "invalid_report"),
]


@pytest.mark.parametrize("make_body,status,code", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_each_bad_submission_is_refused_and_nothing_is_stored(agent, make_body, status, code):
    assert agent.submit(make_report(agent.probe_key)[0]).status_code == 201  # one good row already there
    before = agent.count()
    answer = agent.submit(make_body(agent.probe_key))
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert error["error"] == code
    assert " / " in error["message"] and "\n" not in error["message"]  # 中文 / English, one line
    assert agent.count() == before


def test_a_revoked_key_is_refused_and_its_stored_reports_stay(agent):
    assert agent.submit(make_report(agent.probe_key)[0]).status_code == 201
    alice = agent.officer("alice", "350100123")
    assert alice.post(f"/v1/probes/{PROBE_ID}/revoke").json()["revoked_at"]
    answer = agent.submit(make_report(agent.probe_key)[0])
    assert answer.status_code == 403 and answer.json()["error"] == "revoked_key"
    assert agent.count() == 1
    assert alice.get("/v1/reports").json()[0]["probe_id"] == PROBE_ID


def test_a_replayed_id_with_other_content_is_refused_and_audited(agent):
    envelope, verified = make_report(agent.probe_key)
    assert agent.submit(envelope).status_code == 201
    other, replay = make_report(agent.probe_key, report_id=verified.payload.report_id, run_id="run-2")
    assert replay.sha256 != verified.sha256
    answer = agent.submit(other)
    assert answer.status_code == 409 and answer.json()["error"] == "replayed_id"
    assert agent.count() == 1
    with agent.app.state.sessions() as db:
        assert db.execute(select(Report.sha256)).scalar_one() == verified.sha256
    refusal = agent.audit("report.refuse")
    assert [e.subject for e in refusal] == [verified.payload.report_id]
    assert json.loads(refusal[0].detail)["offered_sha256"] == replay.sha256


def test_fifty_megabytes_are_refused_with_413(agent):
    before = agent.count()
    declared = agent.client.post("/v1/reports", content=MIB * 50)
    assert declared.status_code == 413 and declared.json()["error"] == "too_large"
    assert agent.count() == before


def _asgi_post(app: FastAPI, chunks: Iterator[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """POST /v1/reports straight into the ASGI app; returns (status, how many body chunks the app pulled)."""
    pulled = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/reports", "raw_path": b"/v1/reports", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), *headers], "client": ("127.0.0.1", 1),
             "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), pulled


def test_a_large_body_is_not_buffered_whole(agent):
    # Declared too large: refused before a single byte of the body is read.
    status, pulled = _asgi_post(agent.app, iter([MIB] * 50), [(b"content-length", str(FIFTY_MB).encode())])
    assert (status, pulled) == (413, 0)
    # Streamed without a length: dropped as soon as the count passes 8 MiB.
    status, pulled = _asgi_post(agent.app, iter([MIB] * 50), [(b"transfer-encoding", b"chunked")])
    assert status == 413 and pulled == 9
    assert agent.count() == 0


def test_identical_concurrent_submissions_make_one_row(agent):
    envelope, _ = make_report(agent.probe_key)

    def submit(_: int) -> tuple[int, bytes]:
        with agent.app.state.sessions() as db:
            return accept_report(db, agent.app.state.agent_key, envelope)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(submit, range(8)))
    assert sorted(status for status, _ in answers) == [200] * 7 + [201]
    assert len({receipt for _, receipt in answers}) == 1
    assert agent.count() == 1


def test_enrollment_needs_an_officer(agent, tmp_path):
    with agent.app.state.sessions() as db:
        db.add(Officer(username="alice", display_name="李丽", badge="350100123", password_hash=password_hash(),
                       active=True, created_at=agent.settings.now()))
        db.commit()
    _, pub = make_probe_key(tmp_path, "second")
    body = {"probe_id": "probe-2", "public_key": pub.read_text(), "label": "二号"}
    anonymous = agent.client.post("/v1/probes", json=body)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert agent.client.post("/v1/probes", json=body, auth=("alice", "wrong password")).status_code == 401
    created = agent.client.post("/v1/probes", json=body, auth=("alice", PASSWORD))
    assert created.status_code == 201, created.text
    assert created.json()["public_key"].startswith("ed25519:") and len(created.json()["key_id"]) == 64
    again = agent.client.post("/v1/probes", json={**body, "probe_id": "probe-3"}, auth=("alice", PASSWORD))
    assert again.status_code == 409 and again.json()["error"] == "already_enrolled"
    bad = agent.client.post("/v1/probes", json={**body, "public_key": "ed25519:AAAA"}, auth=("alice", PASSWORD))
    assert bad.status_code == 422 and bad.json()["error"] == "bad_public_key"
    assert [e.actor for e in agent.audit("probe.enroll")] == ["cli", "officer:alice"]
    assert [e.subject for e in agent.audit("login.fail")] == ["alice"]


def test_case_reads_changes_sign_offs_and_lock(agent):
    envelope, verified = make_report(agent.probe_key)
    agent.submit(envelope)
    rid = verified.payload.report_id
    alice, bob = agent.officer("alice", "350100123"), agent.officer("bob", "350100456")
    assert agent.client.get(f"/v1/reports/{rid}").status_code == 401

    listed = alice.get("/v1/reports").json()
    assert listed[0]["report_id"] == rid and listed[0]["venue_name"] == "星际网咖"
    assert listed[0]["counts"] == verified.payload.model_dump(mode="json")["counts"]
    assert alice.get(f"/v1/reports/{rid}/envelope").content == envelope
    case = alice.get(f"/v1/reports/{rid}").json()
    assert case["sha256"] == verified.sha256 and case["probe_id"] == PROBE_ID and case["locked"] is False
    items = [m["item_id"] for m in case["manual_items"]]
    assert items == ["SIGNAGE", "ADDRESS", "SECURITY-OFFICER", "REALNAME-ONSITE", "ONLINE-COUNT", "HARMFUL-INFO"]
    assert {r["code"] for r in case["suggested_result_types"]}  # IP-MAP fails in reportkit's café
    assert alice.post(f"/v1/reports/{rid}/signoff").status_code == 409  # nothing recorded yet

    for item in items:
        assert alice.put(f"/v1/reports/{rid}/manual/{item}", json={"status": "pass", "note": "现场核对"}).status_code == 200
    assert alice.put(f"/v1/reports/{rid}/manual/NOPE", json={"status": "pass"}).status_code == 422
    assert alice.put(f"/v1/reports/{rid}/result", json={"result_type": "bogus"}).status_code == 422
    assert alice.put(f"/v1/reports/{rid}/result", json={"result_type": "corrected", "note": "已改正"}).status_code == 200
    assert alice.post(f"/v1/reports/{rid}/signoff").json()["locked"] is False
    assert alice.post(f"/v1/reports/{rid}/signoff").json()["error"] == "already_signed"
    # A change after a sign-off withdraws it: the signer signed another state.
    changed = bob.put(f"/v1/reports/{rid}/manual/SIGNAGE", json={"status": "fail", "note": "招牌不符"}).json()
    assert changed["signoffs"] == []
    assert bob.post(f"/v1/reports/{rid}/signoff").json()["locked"] is False
    locked = alice.post(f"/v1/reports/{rid}/signoff").json()
    assert locked["locked"] is True and [s["officer"]["badge"] for s in locked["signoffs"]] == ["350100456", "350100123"]
    assert locked["result_type"] == {"code": "corrected", "zh": "发现问题已责令改正",
                                     "en": "Problem found and corrected on order"}
    assert bob.put(f"/v1/reports/{rid}/result", json={"result_type": "no_problem"}).json()["error"] == "locked"
    actions = [a["action"] for a in locked["audit"]]
    assert actions[0] == "report.accept" and actions.count("manual.set") == 7
    assert {"result.set", "signoff.withdraw"} <= set(actions) and actions.count("signoff") == 3


def test_exports_json_ocsf_and_pdf(agent):
    envelope, verified = make_report(agent.probe_key)
    agent.submit(envelope)
    rid = verified.payload.report_id
    alice = agent.officer("alice", "350100123")
    alice.put(f"/v1/reports/{rid}/manual/SIGNAGE", json={"status": "pass"})

    doc = alice.get(f"/v1/reports/{rid}/export.json").json()
    assert doc["case"]["sha256"] == verified.sha256 and doc["envelope"] == json.loads(envelope)

    events = alice.get(f"/v1/reports/{rid}/export.ocsf.json").json()
    assert len(events) == len(verified.payload.findings)
    for event, finding in zip(events, verified.payload.findings):
        for required in ("activity_id", "category_uid", "class_uid", "type_uid", "severity_id", "time", "metadata",
                         "finding_info", "compliance"):
            assert required in event, required
        assert (event["class_uid"], event["category_uid"], event["activity_id"], event["type_uid"]) == \
            (CLASS_UID, 2, 1, TYPE_UID) == (2003, 2, 1, 200301)
        assert isinstance(event["time"], int) and event["severity_id"] in (1, 2, 4)
        assert event["metadata"]["product"]["name"] == "cafe-probe" and event["metadata"]["version"].startswith("1.")
        assert event["finding_info"]["uid"] == f"{rid}:{finding.check_id}" and event["finding_info"]["title"]
        compliance = event["compliance"]
        assert compliance["control"] == finding.check_id
        assert compliance["standards"] and all(isinstance(s, str) and s for s in compliance["standards"])
        expected = {Status.PASS: 1, Status.FAIL: 3, Status.INCONCLUSIVE: 2, Status.NOT_APPLICABLE: 99}.get(finding.status)
        if finding.check_id == "SIGNAGE":
            expected = 1  # the officers' record decides a manual item
        elif finding.status is Status.MANUAL:
            expected = 0
        assert compliance["status_id"] == expected, finding.check_id
        assert compliance["status"] == {0: "Unknown", 1: "Pass", 2: "Warning", 3: "Fail", 99: "Not applicable"}[expected]
    assert any(e["compliance"]["status_id"] == 3 for e in events)

    pdf = alice.get(f"/v1/reports/{rid}/casefile.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert [json.loads(e.detail)["format"] for e in agent.audit("export")] == ["json", "ocsf", "pdf"]


def test_agent_key_openapi_root_and_unknown_report(agent):
    key = agent.client.get("/v1/agent/key").json()
    pub = load_public_key(agent.settings.pub_path)
    assert key == {"public_key": public_line(pub), "key_id": key_id(pub)}
    spec = agent.client.get("/openapi.json").json()
    assert {"/v1/reports", "/v1/probes", "/v1/reports/{report_id}/export.ocsf.json"} <= set(spec["paths"])
    assert agent.client.get("/docs").status_code == 200
    root = agent.client.get("/", follow_redirects=False)
    assert root.status_code == 303 and root.headers["location"] == "/ui/reports"
    missing = agent.officer("alice", "350100123").get("/v1/reports/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_report"


def _chunks(count: int, sent: list[int]) -> Iterator[bytes]:
    for _ in range(count):
        sent[0] += 1
        yield MIB


def test_cafe_agent_serve_over_real_http(tmp_path):
    settings, priv = prepare_agent(tmp_path)
    with served_agent(settings.data_dir, tmp_path / "serve.log") as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            envelope, verified = make_report(priv)
            first = client.post("/v1/reports", content=envelope)
            assert first.status_code == 201, first.text
            verify_receipt(first.content, load_public_key(settings.pub_path), verified)
            again = client.post("/v1/reports", content=envelope)
            assert again.status_code == 200 and again.content == first.content

        for headers in ({"content-length": str(FIFTY_MB)}, {}):  # declared, then chunked
            sent = [0]
            with httpx.Client(base_url=url, timeout=10) as client:
                big = client.post("/v1/reports", content=_chunks(50, sent), headers=headers)
            assert big.status_code == 413 and big.json()["error"] == "too_large"
            # 8 MiB read, plus what the socket buffers took in before the close
            assert sent[0] <= 25, f"the server read {sent[0]} MiB of the 50"
