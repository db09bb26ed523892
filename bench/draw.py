"""Draw benchmark: a cafe-draw/1 draw over 100,000 venues and 2,000 inspectors, and its verification.

Run from the repository root with the project's virtualenv python:

    python bench/draw.py [--runs 3] [--venues 100000] [--inspectors 2000]

The registry is made once: ``--venues`` open venues with well-formed credit
codes, 5% of them blacklisted, ``--inspectors`` officers and three declared
conflicts each; the plan draws 5% of the venues and 5% of the blacklist, two
inspectors each. Per run:

* prepare: the canonical snapshot lines and the announcement (what the
  prepare step freezes and publishes);
* draw: the seed, every ticket of the three streams, the picks, the teams and
  the bundle JSON (``draw_algorithm.make_bundle`` + ``bundle_json``);
* verify in process: parse the bundle's bytes and re-derive everything
  (``json.loads`` + ``verify_bundle``);
* verify alone: ``python3 -I draw_algorithm.py bundle.json`` with the file
  copied alone into an empty directory, in a fresh process (Debian's python3
  when there is one, outside the virtualenv), wall time seen from outside.

Peak memory: for the in-process steps, the highest RSS sampled (psutil, every
2 ms) while the step ran; for the fresh process, its own peak RSS
(``ru_maxrss`` of the child). Medians of the runs. Target: < 1 s per step.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
from stdnum.cn import uscc

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agent_api import draw_algorithm as algo  # noqa: E402

TARGET_SECONDS = 1.0
CONFLICTS_PER_INSPECTOR = 3
SAMPLE_SECONDS = 0.002


def registry(venues: int, inspectors: int) -> tuple[list, list, list]:
    """Venue, inspector and conflict tuples as agent_api.draws reads them from the tables."""
    codes = []
    for i in range(venues):
        base = f"91350105MA{i:07d}"
        codes.append(base + uscc.calc_check_digit(base))
    venue_rows = [(c, i % 20 == 0, f"马尾区网吧{i}号店") for i, c in enumerate(codes)]
    people = [(f"35{i:06d}", f"福州市公安局马尾分局网安大队{i % 7}中队") for i in range(inspectors)]
    conflicts = {(people[i][0], codes[(i * 7919 + j * 104729) % venues])
                 for i in range(inspectors) for j in range(CONFLICTS_PER_INSPECTOR)}
    return venue_rows, people, sorted(conflicts)


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Sample this process's RSS while the block runs; yields a dict that gets ``mib`` (the highest seen)."""
    proc, result, done = psutil.Process(), {"mib": 0.0}, threading.Event()

    def sample() -> None:
        while not done.is_set():
            result["mib"] = max(result["mib"], proc.memory_info().rss / 2**20)
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result["mib"] = max(result["mib"], proc.memory_info().rss / 2**20)


def timed(step: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run ``step``: its value, wall seconds and peak RSS (MiB) while it ran."""
    with peak_rss() as rss:
        start = time.perf_counter()
        value = step()
        seconds = time.perf_counter() - start
    return value, seconds, rss["mib"]


def verify_alone(bundle: bytes, workdir: Path) -> tuple[float, float, str]:
    """``python3 -I draw_algorithm.py bundle.json`` alone in ``workdir``: wall seconds, its peak RSS, verdict."""
    shutil.copy(Path(algo.__file__), workdir / "draw_algorithm.py")
    (workdir / "bundle.json").write_bytes(bundle)
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    # A wrapper reports the child's own peak RSS; the timing is of the child alone.
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL); "
               "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)")
    out = subprocess.run([sys.executable, "-c", wrapper, python, "-I", "draw_algorithm.py", "bundle.json"],
                         cwd=workdir, capture_output=True, text=True, timeout=120, check=True).stdout.split()
    seconds, maxrss_kb, code = float(out[0]), int(out[1]), int(out[2])
    return seconds, maxrss_kb / 1024, {0: "ok", 1: "MISMATCH", 2: "UNREADABLE"}.get(code, str(code))


def one_run(venues: list, people: list, conflicts: list, workdir: Path) -> dict[str, Any]:
    secret = hashlib.sha256(f"bench {time.time_ns()}".encode()).digest()

    def prepare() -> tuple[list[str], dict]:
        lines = algo.snapshot_lines(venues, people, conflicts)
        return lines, algo.announce(
            lines, task_number="BENCH-01", task_name="基准测试", plan_number="FZ-MW-2026", plan_name="基准",
            jurisdiction="FZ-MW", authority="福州市公安局马尾分局", check_type="undirected",
            check_start="2026-03-02", check_end="2026-03-13", prepared_at="2026-02-27T09:00:00+08:00",
            ratio="0.05", blacklist_ratio="0.05", inspectors_per_venue=2,
            commitment=hashlib.sha256(secret).hexdigest(), beacon_name=None)

    (lines, announcement), prep_s, prep_mib = timed(prepare)
    witnesses = [("张三", "3141592653"), ("李四", "5897932384"), ("公证员王五", "6264338327")]

    def draw() -> bytes:
        return algo.bundle_json(algo.make_bundle(announcement, lines, secret, witnesses, None,
                                                 "2026-02-28T10:00:00+08:00", [], "2026-03-01T09:00:00+08:00"))

    bundle, draw_s, draw_mib = timed(draw)
    check, verify_s, verify_mib = timed(lambda: algo.verify_bundle(json.loads(bundle)))
    if not check.ok:
        raise SystemExit(f"the bundle did not verify: {check.problems[:3]}")
    alone_s, alone_mib, verdict = verify_alone(bundle, workdir)
    return {"prepare": (prep_s, prep_mib), "draw": (draw_s, draw_mib), "verify": (verify_s, verify_mib),
            "alone": (alone_s, alone_mib), "verdict": verdict, "bytes": len(bundle),
            "picks": len(check.final or []), "sizes": announcement["sizes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--venues", type=int, default=100_000)
    parser.add_argument("--inspectors", type=int, default=2_000)
    args = parser.parse_args()
    start = time.perf_counter()
    venues, people, conflicts = registry(args.venues, args.inspectors)
    made = time.perf_counter() - start
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-draw-") as tmp:
        for n in range(args.runs):
            workdir = Path(tmp) / f"run{n}"
            workdir.mkdir()
            runs.append(one_run(venues, people, conflicts, workdir))
    first = runs[0]
    print(f"registry: {len(venues)} venues ({sum(v[1] for v in venues)} blacklisted), {len(people)} inspectors, "
          f"{len(conflicts)} conflicts (made in {made:.1f} s); drawn: {first['sizes']} -> {first['picks']} venues, "
          f"2 inspectors each; bundle {first['bytes'] / 2**20:.1f} MiB; {args.runs} runs, medians")
    print(f"{'step':48} {'seconds':>8} {'peak RSS MiB':>13} {'target':>8}")
    rows = (("prepare (snapshot lines + announcement)", "prepare", False),
            ("draw (seed, tickets, picks, teams, bundle JSON)", "draw", True),
            ("verify in process (JSON parse + re-derive)", "verify", True),
            ("verify alone: python3 -I draw_algorithm.py", "alone", True))
    for label, key, targeted in rows:
        seconds = statistics.median(r[key][0] for r in runs)
        mib = statistics.median(r[key][1] for r in runs)
        verdict = ("met" if seconds < TARGET_SECONDS else "MISSED") if targeted else "-"
        print(f"{label:48} {seconds:8.2f} {mib:13.0f} {verdict:>8}")
    print(f"standalone verdicts: {', '.join(r['verdict'] for r in runs)}; "
          f"this process's peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
