"""Delivery survives a sender killed at any instant: every report reaches the agent exactly once.

A real ``cafe-agent serve`` (uvicorn, SQLite file) on 127.0.0.1; the real
sender in a forked child, SIGKILLed after a random delay, over many rounds,
while new reports keep arriving in the outbox. Then one uninterrupted send.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from probe.home import PinnedAgent, ProbeHome
from probe.keys import key_id, load_public_key, public_line
from probe.outbox import Outbox
from probe.report import verify_receipt
from probe.sender import send_outbox
from tests.agentkit import PROBE_ID, free_port, served_agent, setup_agent
from tests.reportkit import make_report

PER_ROUND = 3
MID_SEND_KILLS = 10
MAX_ROUNDS = 200


@pytest.fixture()
def agent_and_probe(tmp_path):
    """An agent with the probe enrolled, serving on loopback; a probe home pinned to it."""
    data = tmp_path / "agent"
    home = ProbeHome(tmp_path / "probe")
    ident = home.keygen(PROBE_ID)  # the id reportkit puts in its payloads
    setup_agent(data, probe_pub=home.public_key_path, probe_id=ident.probe_id)
    with served_agent(data, tmp_path / "agent.log") as url:
        home.pin_agent(url, public_line(load_public_key(data / "agent.pub")))
        yield data, home, ident


def _sender(root: str) -> None:
    home = ProbeHome(Path(root))
    send_outbox(Outbox(home.outbox_path), home.agent(), attempts=2, backoff=0.01)
    os._exit(0)


def _enqueue(outbox: Outbox, ident, queued: list[str], count: int) -> None:
    for _ in range(count):
        envelope, verified = make_report(ident.private_key)
        outbox.enqueue(verified.payload.report_id, envelope)
        queued.append(verified.payload.report_id)


def test_sigkilled_sender_delivers_every_report_exactly_once(agent_and_probe):
    data, home, ident = agent_and_probe
    outbox = Outbox(home.outbox_path)
    rng = random.Random(20261124)
    fork = multiprocessing.get_context("fork")
    queued: list[str] = []

    # Kill delays are drawn over the time one batch takes on this machine (a CI
    # runner can be several times slower than a laptop), measured with a real run.
    _enqueue(outbox, ident, queued, PER_ROUND)
    started = time.monotonic()
    child = fork.Process(target=_sender, args=(str(home.root),))
    child.start()
    child.join()
    batch_time = time.monotonic() - started
    assert child.exitcode == 0 and outbox.pending() == []

    killed_mid_send = 0
    acknowledged_not_moved = 0  # the window where a resend must not make a second record
    rounds = 0
    # Rounds go on until the kills have landed while reports were moving, not only
    # before or after, and at least once between the agent's commit and the local move.
    while rounds < MAX_ROUNDS and (killed_mid_send < MID_SEND_KILLS or acknowledged_not_moved < 1):
        rounds += 1
        _enqueue(outbox, ident, queued, PER_ROUND)
        before = len(outbox.sent())
        child = fork.Process(target=_sender, args=(str(home.root),))
        child.start()
        time.sleep(rng.uniform(0, batch_time * 1.2))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        killed_mid_send += child.exitcode == -signal.SIGKILL and len(outbox.sent()) > before
        with sqlite3.connect(data / "agent.db") as db:
            at_agent = {row[0] for row in db.execute("SELECT report_id FROM reports")}
        acknowledged_not_moved += bool(at_agent & {e.report_id for e in outbox.pending()})
    print(f"batch {batch_time:.3f} s; {rounds} rounds; kills after some progress: {killed_mid_send}, "
          f"acknowledged but not moved: {acknowledged_not_moved}")
    assert killed_mid_send >= MID_SEND_KILLS, killed_mid_send
    assert acknowledged_not_moved >= 1, "no kill landed between the agent's commit and the local move"

    results = send_outbox(outbox, home.agent(), attempts=3, backoff=0.05)
    assert all(r.outcome in ("sent", "recovered") for r in results), results
    assert outbox.pending() == [] and outbox.unfinished_moves() == []

    sent = outbox.sent()
    assert sorted(e.report_id for e in sent) == sorted(queued)
    agent_key = load_public_key(data / "agent.pub")
    records = set()
    for entry in sent:
        assert entry.receipt is not None
        receipt = verify_receipt(entry.receipt.read_bytes(), agent_key)
        assert receipt.report_id == entry.report_id
        records.add(receipt.record)
    assert len(records) == len(queued)

    with sqlite3.connect(data / "agent.db") as db:
        stored = [row[0] for row in db.execute("SELECT report_id FROM reports")]
        accepted = db.execute("SELECT count(*) FROM audit_log WHERE action = 'report.accept'").fetchone()[0]
    assert sorted(stored) == sorted(queued)  # exactly once: no id twice, none missing
    assert accepted == len(queued)


def test_unreachable_refused_and_wrongly_signed_receipts_keep_the_report_pending(agent_and_probe, tmp_path):
    data, home, ident = agent_and_probe
    outbox = Outbox(home.outbox_path)
    envelope, verified = make_report(ident.private_key)
    rid = verified.payload.report_id
    outbox.enqueue(rid, envelope)
    real = home.agent()

    # nobody listening: bounded attempts with growing backoff, then given up; nothing moved
    waits: list[float] = []
    dead = PinnedAgent(url=f"http://127.0.0.1:{free_port()}", public_key=real.public_key, key_id=real.key_id)
    [result] = send_outbox(outbox, dead, attempts=4, backoff=0.5, max_backoff=1.5, sleep=waits.append)
    assert result.outcome == "unreachable" and waits == [0.5, 1.0, 1.5]
    assert [e.report_id for e in outbox.pending()] == [rid]

    # a receipt signed by a key other than the pinned one is not evidence: refused, not moved
    impostor = Ed25519PrivateKey.generate().public_key()
    unpinned = PinnedAgent(url=real.url, public_key=impostor, key_id=key_id(impostor))
    [result] = send_outbox(outbox, unpinned)
    assert result.outcome == "bad_receipt" and "unknown key" in result.detail
    assert [e.report_id for e in outbox.pending()] == [rid] and outbox.pending()[0].receipt is None

    # the agent stored it meanwhile; the right key now gets the same receipt and completes the move
    [result] = send_outbox(outbox, real)
    assert result.outcome == "sent" and outbox.pending() == [] and [e.report_id for e in outbox.sent()] == [rid]

    # a report the agent refuses (another probe id than enrolled) stays pending, with the agent's reason
    other_envelope, other = make_report(ident.private_key, probe=verified.payload.probe.model_copy(
        update={"id": "someone-else"}))
    outbox.enqueue(other.payload.report_id, other_envelope)
    [result] = send_outbox(outbox, real)
    assert result.outcome == "refused" and "HTTP 422" in result.detail and "someone-else" in result.detail
    assert [e.report_id for e in outbox.pending()] == [other.payload.report_id]
