"""Deliver the outbox to the inspector device: POST, verify the signed receipt, store it, then move.

A report counts as delivered only when a receipt signed by the pinned agent
key names its id and the SHA-256 of its signed payload. Transport errors,
5xx, 408 and 429 are retried with exponential backoff, a bounded number of
times; any other refusal is final for this run and the report stays pending,
with the agent's reason shown. Nothing is ever deleted.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from probe.dsse import EnvelopeError, parse_envelope
from probe.home import PinnedAgent
from probe.outbox import Entry, Outbox
from probe.report import ReportError, verify_receipt

__all__ = ["SendResult", "send_outbox", "device_client", "REPORTS_PATH"]

REPORTS_PATH = "/v1/reports"
Outcome = Literal["sent", "recovered", "refused", "unreachable", "bad_receipt", "corrupt"]


@dataclass(frozen=True)
class SendResult:
    """What happened to one pending report."""

    report_id: str
    outcome: Outcome
    detail: str
    record: int | None = None


def device_client(timeout: float) -> httpx.Client:
    """The probe's HTTP client to the inspector device, for delivery and the clock check alike.

    No proxy or certificate settings from the environment (the device is
    reached directly over the officer link) and no redirects (the pinned
    device answers itself or not at all).
    """
    return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


def _agent_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return body["message"][:300]
    except ValueError:
        pass
    return response.text[:200] or response.reason_phrase


def _send_one(client: httpx.Client, outbox: Outbox, agent: PinnedAgent, entry: Entry, attempts: int,
              backoff: float, max_backoff: float, sleep: Callable[[float], None]) -> SendResult:
    rid = entry.report_id
    envelope = entry.envelope.read_bytes()
    try:
        _, payload, _ = parse_envelope(envelope)
    except EnvelopeError as exc:
        return SendResult(rid, "corrupt", f"发件箱中的报告已损坏 / the stored envelope is damaged: {exc}")
    digest = hashlib.sha256(payload).hexdigest()
    last = ""
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            sleep(min(max_backoff, backoff * 2 ** (attempt - 2)))
        try:
            response = client.post(agent.url + REPORTS_PATH, content=envelope,
                                   headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        if response.status_code in (200, 201):
            try:
                receipt = verify_receipt(response.content, agent.public_key)
            except ReportError as exc:
                return SendResult(rid, "bad_receipt", str(exc))
            if receipt.report_id != rid or receipt.report_sha256 != digest:
                return SendResult(rid, "bad_receipt", "回执所指并非本报告 / the receipt names another report or digest")
            outbox.store_receipt(rid, response.content)
            outbox.complete(rid)
            return SendResult(rid, "sent", f"记录号 record {receipt.record}", receipt.record)
        if not _retryable(response.status_code):
            return SendResult(rid, "refused", f"HTTP {response.status_code}: {_agent_message(response)}")
        last = f"HTTP {response.status_code}: {_agent_message(response)}"
    return SendResult(rid, "unreachable", f"{attempts} 次尝试均失败 / gave up after {attempts} attempts ({last})")


def send_outbox(outbox: Outbox, agent: PinnedAgent, *, attempts: int = 5, backoff: float = 0.5,
                max_backoff: float = 8.0, timeout: float = 10.0,
                on_result: Callable[[SendResult], None] | None = None,
                sleep: Callable[[float], None] = time.sleep) -> list[SendResult]:
    """Finish interrupted moves, then send every pending report once (with bounded retries each)."""
    results: list[SendResult] = []

    def report(result: SendResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    for rid in outbox.unfinished_moves():
        outbox.complete(rid)
        report(SendResult(rid, "recovered", "上次中断的移动已完成 / finished a move interrupted by a crash"))
    with device_client(timeout) as client:
        for entry in outbox.pending():
            if entry.receipt is not None:
                # A receipt was verified and stored before a crash: finish without resending.
                try:
                    verify_receipt(entry.receipt.read_bytes(), agent.public_key)
                except ReportError:
                    entry.receipt.unlink()  # not a valid receipt after all: it is not evidence; ask again
                else:
                    outbox.complete(entry.report_id)
                    report(SendResult(entry.report_id, "recovered", "回执已在，完成移动 / receipt already stored"))
                    continue
            report(_send_one(client, outbox, agent, entry, attempts, backoff, max_backoff, sleep))
    return results
