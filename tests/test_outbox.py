"""The outbox on its own: durable states, recovery after a crash between renames, never evicting."""

from __future__ import annotations

import os
import uuid

import pytest

from probe.outbox import Outbox, OutboxFull


def _id() -> str:
    return str(uuid.uuid4())


def test_enqueue_receipt_complete_walks_the_states(tmp_path):
    box = Outbox(tmp_path / "ob")
    rid = _id()
    box.enqueue(rid, b"envelope")
    assert [e.report_id for e in box.pending()] == [rid] and box.pending()[0].receipt is None
    with pytest.raises(FileNotFoundError):
        box.complete(rid)  # never moved without a stored receipt
    box.store_receipt(rid, b"receipt")
    assert box.pending()[0].receipt is not None
    box.complete(rid)
    assert box.pending() == [] and [e.report_id for e in box.sent()] == [rid]
    assert (box.sent_dir / f"{rid}.receipt.json").read_bytes() == b"receipt"
    with pytest.raises(FileExistsError):
        box.enqueue(rid, b"again")  # an id already sent is not queued twice


def test_crash_between_the_two_renames_is_finished_later(tmp_path):
    box = Outbox(tmp_path / "ob")
    rid = _id()
    box.enqueue(rid, b"envelope")
    box.store_receipt(rid, b"receipt")
    # the envelope's rename happened, the receipt's did not
    os.replace(box.pending_dir / f"{rid}.dsse.json", box.sent_dir / f"{rid}.dsse.json")
    assert box.pending() == [] and box.unfinished_moves() == [rid]
    box.complete(rid)
    assert box.unfinished_moves() == [] and box.sent()[0].receipt is not None


def test_stale_temporaries_are_not_reports(tmp_path):
    box = Outbox(tmp_path / "ob")
    (box.pending_dir / f".{_id()}.dsse.json.123.tmp").write_bytes(b"half")
    box = Outbox(tmp_path / "ob")
    assert box.pending() == [] and not list(box.pending_dir.iterdir())


def test_a_full_outbox_refuses_and_keeps_every_report(tmp_path):
    box = Outbox(tmp_path / "ob", max_pending=3)
    ids = [_id() for _ in range(3)]
    for rid in ids:
        box.enqueue(rid, rid.encode())
    with pytest.raises(OutboxFull, match="outbox full: 3 unsent"):
        box.check_room()
    assert sorted(e.report_id for e in box.pending()) == sorted(ids)
    greedy = Outbox(tmp_path / "ob2", min_free_bytes=1 << 62)
    with pytest.raises(OutboxFull, match="disk space"):
        greedy.check_room()


def test_ids_are_checked(tmp_path):
    box = Outbox(tmp_path / "ob")
    for bad in ("../x", "", "a" * 36):
        with pytest.raises(ValueError):
            box.enqueue(bad, b"x")
