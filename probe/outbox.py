"""The outbox: signed reports on disk until the inspector device has signed a receipt for them.

States of one report ``<id>``, each reached by one atomic rename, so a crash or
power loss at any instant leaves a state the next sender run can finish::

    pending/<id>.dsse.json                               queued, not acknowledged
    pending/<id>.dsse.json + pending/<id>.receipt.json   acknowledged, not yet moved
    sent/<id>.dsse.json    + pending/<id>.receipt.json   moved, receipt not yet moved
    sent/<id>.dsse.json    + sent/<id>.receipt.json      done

A report is only ever re-sent while no verified receipt is stored for it; the
agent answers an identical resubmission with the same receipt, so a resend
after a crash never makes a second record. Nothing here ever deletes a signed
report: when the outbox is full, :meth:`Outbox.check_room` refuses new runs.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from probe.report import fsync_dir, write_atomic

__all__ = ["Outbox", "OutboxFull", "Entry", "MAX_PENDING", "MIN_FREE_BYTES"]

MAX_PENDING = 200                  # unsent reports before new runs are refused
MIN_FREE_BYTES = 64 * 1024 * 1024  # keep room for one more run's capture and report
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ENVELOPE = ".dsse.json"
RECEIPT = ".receipt.json"


class OutboxFull(Exception):
    """No room for another signed report; the message says why and what to do."""


@dataclass(frozen=True)
class Entry:
    """One report in the outbox."""

    report_id: str
    envelope: Path
    receipt: Path | None
    sent: bool


class Outbox:
    """A directory with ``pending/`` and ``sent/``."""

    def __init__(self, root: Path, max_pending: int = MAX_PENDING, min_free_bytes: int = MIN_FREE_BYTES) -> None:
        self.root = root
        self.pending_dir = root / "pending"
        self.sent_dir = root / "sent"
        self.max_pending = max_pending
        self.min_free_bytes = min_free_bytes
        for d in (self.root, self.pending_dir, self.sent_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        # Half-written temporaries from a crash are never a report: write_atomic
        # only renames complete, fsynced files into place.
        for d in (self.pending_dir, self.sent_dir):
            for tmp in d.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    def enqueue(self, report_id: str, envelope: bytes) -> Path:
        """Store a signed envelope durably in ``pending/``; refuses an id already in the outbox."""
        self._check_id(report_id)
        target = self.pending_dir / f"{report_id}{ENVELOPE}"
        if target.exists() or (self.sent_dir / f"{report_id}{ENVELOPE}").exists():
            raise FileExistsError(f"报告 {report_id} 已在发件箱中 / report already in the outbox")
        write_atomic(target, envelope)
        return target

    def pending(self) -> list[Entry]:
        """Reports without a completed move to ``sent/``, oldest first."""
        entries = []
        for env in sorted(self.pending_dir.glob(f"*{ENVELOPE}"), key=lambda p: (p.stat().st_mtime, p.name)):
            rid = env.name[: -len(ENVELOPE)]
            if _ID.match(rid):
                receipt = self.pending_dir / f"{rid}{RECEIPT}"
                entries.append(Entry(rid, env, receipt if receipt.exists() else None, sent=False))
        return entries

    def sent(self) -> list[Entry]:
        """Reports acknowledged by the inspector device."""
        entries = []
        for env in sorted(self.sent_dir.glob(f"*{ENVELOPE}")):
            rid = env.name[: -len(ENVELOPE)]
            if _ID.match(rid):
                receipt = self.sent_dir / f"{rid}{RECEIPT}"
                entries.append(Entry(rid, env, receipt if receipt.exists() else None, sent=True))
        return entries

    def unfinished_moves(self) -> list[str]:
        """Ids whose envelope is in ``sent/`` but whose receipt is still in ``pending/`` (a crash between renames)."""
        return [p.name[: -len(RECEIPT)] for p in sorted(self.pending_dir.glob(f"*{RECEIPT}"))
                if (self.sent_dir / p.name.replace(RECEIPT, ENVELOPE)).exists()]

    def store_receipt(self, report_id: str, receipt: bytes) -> None:
        """Persist a verified receipt beside the pending envelope (before any move)."""
        self._check_id(report_id)
        write_atomic(self.pending_dir / f"{report_id}{RECEIPT}", receipt)

    def complete(self, report_id: str) -> None:
        """Move an acknowledged report and its receipt to ``sent/``; safe to call again after a crash."""
        self._check_id(report_id)
        receipt = self.pending_dir / f"{report_id}{RECEIPT}"
        envelope = self.pending_dir / f"{report_id}{ENVELOPE}"
        if not receipt.exists():
            raise FileNotFoundError(f"报告 {report_id} 没有回执，不能移入已发送 / no receipt stored; not moved")
        if envelope.exists():
            os.replace(envelope, self.sent_dir / envelope.name)
            fsync_dir(self.sent_dir)
            fsync_dir(self.pending_dir)
        os.replace(receipt, self.sent_dir / receipt.name)
        fsync_dir(self.sent_dir)
        fsync_dir(self.pending_dir)

    def check_room(self) -> None:
        """Raise OutboxFull when a new run could not store its report without evicting one."""
        count = len(self.pending())
        if count >= self.max_pending:
            raise OutboxFull(f"发件箱已满：{count} 份报告未发送（上限 {self.max_pending}），请先运行 cafe-probe send / "
                             f"outbox full: {count} unsent reports (limit {self.max_pending}); run 'cafe-probe send' "
                             "first. Signed reports are never discarded.")
        free = shutil.disk_usage(self.root).free
        if free < self.min_free_bytes:
            raise OutboxFull(f"磁盘空间不足：{self.root} 仅剩 {free // (1024 * 1024)} MiB / not enough disk space "
                             f"for another report ({free // (1024 * 1024)} MiB free, "
                             f"{self.min_free_bytes // (1024 * 1024)} MiB needed)")

    @staticmethod
    def _check_id(report_id: str) -> None:
        if not _ID.match(report_id):
            raise ValueError(f"not a report id: {report_id!r}")
