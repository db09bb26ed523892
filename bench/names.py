"""NetBIOS naming under frame loss: our survey against nmap's nbstat script, inside a lab café.

Run as root from the repository root with the project's virtualenv python:

    python bench/names.py [--runs 20] [--scenario messy] [--loss 0,5] [--nmap-runs 3]

The lab is built once (``lab.build.running``) and torn down whatever happens;
the switch loss is set with ``Lab.set_loss``. Everything runs inside the lab's
probe namespace against the lab's own LAN (DESIGN.md section 2). Per loss level:

* ours: ``arp.sweep`` then ``netbios.survey`` over one ``RawLink("eth0")``,
  in this process (entered into the namespace); per run the named live
  terminals found against those that share a name (``Lab.truth()``), the
  passes the survey made and its seconds;
* ``nmap -sU -p137 --script nbstat -n -Pn`` on the live hosts, a few runs.

A run is "complete" when every live terminal that shares a name was named.
It prints a markdown table for the README and the command line.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab import netns as ns  # noqa: E402
from lab.build import Lab, running  # noqa: E402
from probe.net import arp, netbios  # noqa: E402
from probe.net.link import RawLink  # noqa: E402
from probe.profile import load_profile  # noqa: E402

NMAP_TIMEOUT = 900.0


def ours(lab: Lab, named: set[str]) -> dict:
    """One sweep and survey; how many of ``named`` were named, passes, seconds."""
    truth = lab.truth()
    profile = load_profile(truth["profile"])
    probe_ip = IPv4Address(truth["probe"]["address"])
    with ns.inside(lab.probe_netns):
        link = RawLink("eth0")
        try:
            sweep = arp.sweep(link, profile.network.subnets, probe_ip)
            survey = netbios.survey(link, [(h.address, h.mac) for h in sweep.hosts], probe_ip)
        finally:
            link.close()
    got = {str(a.address) for a in survey.answers} & named
    return {"named": len(got), "passes": survey.rounds, "seconds": survey.seconds,
            "frames": sum(p.asked for p in survey.passes)}


def peer(lab: Lab, named: set[str]) -> dict:
    """nmap's nbstat over the same live hosts."""
    hosts = sorted({h["address"] for h in lab.truth()["live_hosts"]}, key=lambda a: IPv4Address(a))
    started = time.monotonic()
    proc = subprocess.run(lab.exec_argv(["nmap", "-sU", "-p137", "--script", "nbstat", "-n", "-Pn", *hosts]),
                          capture_output=True, text=True, timeout=NMAP_TIMEOUT)
    seconds = time.monotonic() - started
    got: set[str] = set()
    current = None
    for line in proc.stdout.splitlines():
        if m := re.match(r"Nmap scan report for (\S+)", line):
            current = m.group(1)
        elif "NetBIOS name:" in line and current is not None:
            got.add(current)
    return {"named": len(got & named), "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--nmap-runs", type=int, default=3)
    parser.add_argument("--scenario", default="messy")
    parser.add_argument("--loss", default="0,5", help="switch frame loss levels, percent, comma-separated")
    args = parser.parse_args()
    rows = []
    with running(args.scenario, "bnames") as lab:
        truth = lab.truth()
        named = {t["address"] for t in truth["terminals"] if t["power"] == "on" and t["netbios"]}
        for loss in [float(x) for x in args.loss.split(",")]:
            lab.set_loss(loss)
            runs = []
            for k in range(args.runs):
                runs.append(ours(lab, named))
                print(f"loss {loss:g} % run {k + 1}: named {runs[-1]['named']}/{len(named)} in "
                      f"{runs[-1]['passes']} passes, {runs[-1]['seconds']:.2f} s", flush=True)
            complete = sum(r["named"] == len(named) for r in runs)
            rows.append((f"{loss:g} %", "**cafe-probe survey**", len(runs), complete,
                         min(r["named"] for r in runs), statistics.median(r["seconds"] for r in runs),
                         f"{statistics.median(r['passes'] for r in runs):g} "
                         f"({min(r['passes'] for r in runs)}–{max(r['passes'] for r in runs)})"))
            nm = [peer(lab, named) for _ in range(args.nmap_runs)]
            if nm:
                rows.append((f"{loss:g} %", "`nmap -sU -p137 --script nbstat`", len(nm),
                             sum(r["named"] == len(named) for r in nm), min(r["named"] for r in nm),
                             statistics.median(r["seconds"] for r in nm), "—"))
        lab.set_loss(0)
    print(f"\n{args.scenario}: {len(named)} live terminals that share a NetBIOS name\n")
    print("| loss | tool | runs | runs naming all | fewest named | median seconds | passes (median, min–max) |")
    print("|---|---|---|---|---|---|---|")
    for loss, tool, n, complete, fewest, seconds, passes in rows:
        print(f"| {loss} | {tool} | {n} | {complete} | {fewest}/{len(named)} | {seconds:.2f} | {passes} |")
    print(f"\nCommand: python bench/names.py --runs {args.runs} --nmap-runs {args.nmap_runs} "
          f"--scenario {args.scenario} --loss {args.loss}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
