"""Case-file benchmark: how long the inspector device takes to render a case as PDF, JSON and OCSF.

Run from the repository root with the project's virtualenv python:

    python bench/casefile.py [--runs 5] [--hosts 0]

The case is the one tests/test_casefile.py checks (``tests.casekit.make_case``:
reportkit's café, every manual item checked, a result type, two officers'
signatures); ``--hosts N`` adds N unidentified hosts to the IP-MAP evidence,
as a crowded café's sweep gives. Each export is rendered from the same
``CaseView`` the way ``agent_api.api.export_case`` renders it, without the
database read around it:

* pdf: ``agent_api.casefile.render_casefile_pdf`` (Jinja HTML, WeasyPrint);
* html: ``render_casefile_html`` alone (the HTML the PDF is laid out from);
* json: the case view and the probe's envelope, as ``export.json`` sends them;
* ocsf: ``agent_api.ocsf.case_events``, as ``export.ocsf.json`` sends them.

The first PDF of a process is timed on its own (it imports WeasyPrint and
loads the fonts); then each export is rendered ``--runs`` times and the
median, min and max are printed. Peak RSS is this process's ``ru_maxrss``
(the PDF sets it). This is where the speed of the case file is tracked: the
tests only check what it contains.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agent_api import ocsf  # noqa: E402
from agent_api.casefile import render_casefile_html, render_casefile_pdf  # noqa: E402
from probe.keys import load_private_key  # noqa: E402
from probe.report import sign_report  # noqa: E402
from tests.casekit import make_case  # noqa: E402


def dumps(doc: object) -> bytes:
    """JSON as the device's exports write it (indented, UTF-8)."""
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


def peak_rss_mib() -> float:
    """This process's peak resident set so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(step: Callable[[], bytes | str]) -> tuple[bytes | str, float]:
    """Run ``step``: its value and the wall seconds it took."""
    start = time.perf_counter()
    value = step()
    return value, time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="renderings of each export after the first PDF (default 5)")
    p.add_argument("--hosts", type=int, default=0,
                   help="unidentified hosts added to the IP-MAP evidence (default 0: the test's case)")
    args = p.parse_args(argv)
    if args.runs < 1 or not 0 <= args.hosts <= 256:
        p.error("--runs must be at least 1 and --hosts between 0 and 256")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-casefile-") as tmp:
        case = make_case(Path(tmp), many_hosts=args.hosts)
        envelope = sign_report(case.payload, load_private_key(Path(tmp) / "probe.key"))

    def as_json() -> bytes:
        return dumps({"schema_version": "cafe-agent.case/1", "case": case.model_dump(mode="json"),
                            "envelope": json.loads(envelope)})

    steps: dict[str, Callable[[], bytes | str]] = {
        "pdf": lambda: render_casefile_pdf(case),
        "html": lambda: render_casefile_html(case),
        "json": as_json,
        "ocsf": lambda: dumps(ocsf.case_events(case)),
    }
    before_pdf = peak_rss_mib()
    first, cold = timed(steps["pdf"])
    if not isinstance(first, bytes) or not first.startswith(b"%PDF-"):
        raise SystemExit("render_casefile_pdf did not give a PDF")
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    sizes: dict[str, int] = {}
    for _ in range(args.runs):
        for name, step in steps.items():
            value, took = timed(step)
            seconds[name].append(took)
            sizes[name] = len(value.encode() if isinstance(value, str) else value)

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"case: {len(case.payload.findings)} findings, {len(case.manual_items)} manual items, "
          f"{args.hosts} extra IP-MAP hosts; {args.runs} runs; {os.cpu_count()} CPUs, load average {load}")
    print(f"first PDF of the process (imports WeasyPrint, loads fonts): {cold:.2f} s")
    print(f"{'export':8} {'median s':>9} {'min s':>8} {'max s':>8} {'size KiB':>9}")
    for name, values in seconds.items():
        print(f"{name:8} {statistics.median(values):9.3f} {min(values):8.3f} {max(values):8.3f} "
              f"{sizes[name] / 1024:9.1f}")
    print(f"peak RSS: {peak_rss_mib():.0f} MiB ({before_pdf:.0f} MiB before the first PDF)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
