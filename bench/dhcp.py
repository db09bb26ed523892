"""DHCP detection benchmark: our discovery against ``nmap --script broadcast-dhcp-discover``.

Run as root from the repository root with the project's virtualenv python:

    python bench/dhcp.py [--runs 3] [--scenario rogue] [--window 5] [--loss 0,20]

The lab (default: the ``rogue`` scenario, three DHCP servers on the LAN: the
registered one, one inside a plugged-in router, one standing alone) is built
once and torn down afterwards whatever happens. Both tools run only inside the
lab's probe namespace (``Lab.exec_argv``), on the lab's own LAN, as DESIGN.md
section 2 requires. Per run it measures:

* ours: ``probe.net.dhcp.discover`` over ``RawLink("eth0")`` in a child python
  (5 DISCOVERs 1 s apart, every OFFER over the window; never a REQUEST);
* nmap: ``nmap -e eth0 --script broadcast-dhcp-discover`` with its timeout
  set to the same window (``broadcast-dhcp-discover.timeout``), and once with
  its default timeout.

Servers found are the distinct server identifiers reported, scored against
the lab's truth (the router plus every rogue server). Wall time is measured
from outside each process, Python's or nmap's start-up included. Each loss
level sets the lab switch's random frame loss (``Lab.set_loss``): nmap sends
one DISCOVER, we send five, so loss is where the two differ.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab.build import Lab, running  # noqa: E402
from tests.conftest import new_lab_id  # noqa: E402

IFACE = "eth0"

OURS_SCRIPT = r"""
import json, sys
from probe.net.dhcp import discover
from probe.net.link import RawLink, mac_str
with RawLink(sys.argv[1]) as link:
    found = discover(link, mac_str(link.mac), window=float(sys.argv[2]))
print(json.dumps({"servers": sorted({str(o.server_id or o.source_ip) for o in found.offers}),
                  "seconds": found.seconds, "sent": found.sent}))
"""

NMAP_SERVER = re.compile(r"Server Identifier:\s*([0-9.]+)")


@dataclass
class Run:
    tool: str
    wall: float
    servers: set[str] = field(default_factory=set)
    note: str = ""


def run_ours(lab: Lab, window: float) -> Run:
    argv = lab.exec_argv([sys.executable, "-c", OURS_SCRIPT, IFACE, str(window)])
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        return Run("ours", wall, note=proc.stderr.strip().splitlines()[-1:][0] if proc.stderr.strip() else "failed")
    data = json.loads(proc.stdout)
    return Run("ours", wall, set(data["servers"]), note=f"{data['sent']} DISCOVERs")


def run_nmap(lab: Lab, timeout: float | None) -> Run:
    args = ["nmap", "-e", IFACE, "--script", "broadcast-dhcp-discover"]
    if timeout is not None:
        args += ["--script-args", f"broadcast-dhcp-discover.timeout={timeout:g}s"]
    t0 = time.monotonic()
    proc = subprocess.run(lab.exec_argv(args), capture_output=True, text=True, timeout=180)
    wall = time.monotonic() - t0
    label = "nmap broadcast-dhcp-discover" + (f" (timeout {timeout:g}s)" if timeout is not None else " (default)")
    if proc.returncode != 0:
        return Run(label, wall, note=proc.stderr.strip()[-200:])
    return Run(label, wall, set(NMAP_SERVER.findall(proc.stdout)))


def expected_servers(truth: dict) -> set[str]:
    return {truth["lan"]["router"]["address"], *(d["address"] for d in truth["rogue_dhcp"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenario", default="rogue")
    parser.add_argument("--window", type=float, default=5.0, help="our listening window, and nmap's timeout")
    parser.add_argument("--loss", default="0,20", help="switch frame loss levels, percent, comma-separated")
    args = parser.parse_args(argv)
    if shutil.which("nmap") is None:
        print("nmap is not installed (run setup.sh)", file=sys.stderr)
        return 2
    losses = [float(x) for x in args.loss.split(",") if x.strip()]
    results: dict[tuple[float, str], list[Run]] = {}
    with running(args.scenario, new_lab_id("bd")) as lab:
        expected = expected_servers(lab.truth())
        for loss in losses:
            lab.set_loss(loss)
            for n in range(args.runs):
                for run in (run_ours(lab, args.window), run_nmap(lab, args.window), run_nmap(lab, None)):
                    results.setdefault((loss, run.tool), []).append(run)
                    found = len(run.servers & expected)
                    extra = run.servers - expected
                    print(f"loss {loss:g}%  run {n + 1}  {run.tool:44} {run.wall:6.2f} s  "
                          f"servers {found}/{len(expected)}{'  extra ' + ','.join(sorted(extra)) if extra else ''}"
                          f"{'  ' + run.note if run.note else ''}", flush=True)
    print(f"\n{args.scenario}: {len(expected)} DHCP servers on the LAN ({', '.join(sorted(expected))}); "
          f"{args.runs} runs per loss level\n")
    print("| loss | tool | servers found per run | wall time, s (median) |")
    print("|---|---|---|---|")
    for loss in losses:
        ours = statistics.median(r.wall for r in results[(loss, "ours")])
        for (level, tool), runs in results.items():
            if level != loss:
                continue
            found = " ".join(str(len(r.servers & expected)) for r in runs)
            wall = statistics.median(r.wall for r in runs)
            ratio = "" if tool == "ours" else f" ({wall / ours:.2f}× ours)"
            print(f"| {loss:g}% | {tool} | {found} (of {len(expected)}) | {wall:.2f}{ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
