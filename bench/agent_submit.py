"""Agent submit benchmark: how many signed reports per second ``cafe-agent serve`` accepts, and the latency of one.

Run from the repository root with the project's virtualenv python:

    python bench/agent_submit.py [--count 500] [--concurrency 4]

It prepares a data directory in a temporary folder (SQLite file, agent key,
one enrolled probe), starts the real ``cafe-agent serve`` (uvicorn) on
127.0.0.1 and a free port, and pre-signs 2 × COUNT distinct reports of a
messy café (140 terminals, 6 on wrong addresses, 4 without names: findings
from ``probe.evaluate`` with the shipped rules, evidence and legal basis
included). It then submits COUNT of them one after the other over one
keep-alive connection, and COUNT with CONCURRENCY workers sharing a
keep-alive pool, and prints reports/s and the p50/p95/p99 latency of a
submit (request sent → receipt received), against the issue's target p99 < 50 ms.
Every answer must be 201 with a receipt that verifies with the agent key.
The server is stopped by its PID whatever happens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from probe.keys import load_public_key  # noqa: E402
from probe.observations import Observations  # noqa: E402
from probe.report import new_report_id, sign_report, verify_receipt  # noqa: E402
from tests.agentkit import prepare_agent, served_agent  # noqa: E402
from tests.reportkit import Host, make_observations, make_payload  # noqa: E402

TARGET_P99_MS = 50.0
TERMINALS = 140
MISPLACED = 6
NAMELESS = 4
# reportkit's café and network, licensed for every terminal: only IP-MAP is meant to fail.
PROFILE = f"""
venue: {{id: FZ-MW-0042, name: 星际网咖, licensed_terminals: {TERMINALS}, address: 福州市马尾区测试路1号}}
network: {{subnets: [198.18.10.0/24], gateways: [198.18.10.1], dhcp_servers: [198.18.10.1]}}
terminals: {{hostname_pattern: '^WB-(?P<number>\\d+)$', first_address: 198.18.10.101}}
"""


def messy_observations() -> Observations:
    """A café of 140 terminals on PROFILE (terminal N at .100+N), some of it wrong."""
    hosts: list[Host] = [("198.18.10.1", "02:00:00:00:00:01", None)]
    for n in range(1, TERMINALS + 1):
        address = 100 + n if n > MISPLACED else 100 + TERMINALS + n  # the first few sit past the last number
        name = None if n > TERMINALS - NAMELESS else f"WB-{n}"
        hosts.append((f"198.18.10.{address}", f"02:00:00:00:{n // 256:02x}:{n % 256:02x}", name))
    return make_observations(hosts=hosts)


def submit_all(client: httpx.Client, envelopes: list[bytes], workers: int) -> tuple[float, list[float], list[bytes]]:
    """Submit every envelope; returns (wall seconds, per-submit latencies in ms, receipts)."""

    def one(envelope: bytes) -> tuple[float, bytes]:
        t0 = time.perf_counter()
        answer = client.post("/v1/reports", content=envelope)
        elapsed = (time.perf_counter() - t0) * 1000
        if answer.status_code != 201:
            raise SystemExit(f"submit answered {answer.status_code}: {answer.text[:300]}")
        return elapsed, answer.content

    t0 = time.perf_counter()
    if workers == 1:
        results = [one(e) for e in envelopes]
    else:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, envelopes))
    return time.perf_counter() - t0, [r[0] for r in results], [r[1] for r in results]


def summary(label: str, seconds: float, latencies: list[float]) -> float:
    """Print one line of figures; returns the p99 in ms."""
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    p50, p95, p99 = cuts[49], cuts[94], cuts[98]
    print(f"{label:<22} {len(latencies) / seconds:8.1f} reports/s   p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   "
          f"p99 {p99:6.1f} ms   max {max(latencies):6.1f} ms")
    return p99


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=500, help="reports per phase (default 500)")
    p.add_argument("--concurrency", type=int, default=4, help="workers of the concurrent phase (default 4)")
    args = p.parse_args(argv)
    if args.count < 2 or args.concurrency < 1:
        p.error("--count must be at least 2 and --concurrency at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cafe-agent-bench-") as tmp:
        root = Path(tmp)
        settings, priv = prepare_agent(root)
        base = make_payload(priv, messy_observations(), profile_text=PROFILE)
        envelopes = [sign_report(base.model_copy(update={"report_id": new_report_id()}), priv)
                     for _ in range(2 * args.count)]
        fails = sum(f.status.value == "fail" for f in base.findings)
        print(f"report: {len(envelopes[0]) / 1024:.1f} KiB envelope, {len(base.findings)} findings ({fails} failed), "
              f"{len(envelopes)} pre-signed")

        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        with served_agent(settings.data_dir, root / "serve.log") as url, \
                httpx.Client(base_url=url, timeout=30, limits=limits) as client:
            sequential = submit_all(client, envelopes[:args.count], 1)
            concurrent = submit_all(client, envelopes[args.count:], args.concurrency)

        agent_key = load_public_key(settings.pub_path)
        records = {verify_receipt(r, agent_key).record for r in sequential[2] + concurrent[2]}
        if len(records) != len(envelopes):
            raise SystemExit(f"{len(records)} distinct records for {len(envelopes)} reports")

    print(f"agent: cafe-agent serve (uvicorn), SQLite WAL synchronous=FULL, in {tempfile.gettempdir()}")
    p99 = max(summary("sequential", sequential[0], sequential[1]),
              summary(f"{args.concurrency} workers", concurrent[0], concurrent[1]))
    verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
    print(f"target p99 < {TARGET_P99_MS:.0f} ms: {verdict} (worst p99 {p99:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
