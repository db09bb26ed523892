"""Service scan benchmark: our scan against ``nmap -sT -Pn -n`` on the same hosts and ports, in a lab café.

Run as root from the repository root with the project's virtualenv python:

    python bench/services.py [--runs 3] [--scenario messy]

The lab is built once (``lab.build.running``) and torn down afterwards
whatever happens. Both tools run only inside the lab's probe namespace
(``Lab.exec_argv``), against the lab's live hosts (``Lab.truth()``: router,
extra routers, servers and powered terminals), as DESIGN.md section 2
requires. Per run:

* ours: ``probe.net.services.scan`` with its default caps (256 sockets, 1,000
  connects per second, 0.5 s to connect, one retry) in a child python, over the
  effective signatures (the shipped ones plus the staged profile's
  ``servers.signatures``). UDP signatures are probed too, as a real run does;
  nmap -sT does no UDP, so the agreement is over TCP only;
* nmap: ``nmap -sT -Pn -n -p PORTS -iL HOSTS`` with default timing (-T3),
  over the same TCP ports.

When the signatures name fewer than 8 TCP ports, both scans use the "typical
scan" set instead: the signatures' TCP ports plus 80, 443, 445 and 3389 (our
side gets a benchmark-only open-port signature for the extra ports; it is
never shipped). Each tool is started under a small python wrapper that
reports its children's peak RSS, so both are measured the same way. Frames
are the probe interface's packet counters before and after (the lab's
background chatter included, alike for both). Wall time is measured from
outside, start-up included. The table gives medians of the runs.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab.build import Lab, running  # noqa: E402
from probe.profile import load_profile  # noqa: E402
from probe.rules import load_ruleset  # noqa: E402
from probe.signatures import Signature, effective_signatures  # noqa: E402
from tests.conftest import new_lab_id  # noqa: E402

IFACE = "eth0"
TYPICAL = [80, 443, 445, 3389]
MIN_PORTS = 8
TOOL_TIMEOUT = 900

# Runs a tool as its child and reports the children's peak RSS last on stderr, for ours and nmap alike.
RSS_WRAPPER = r"""
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print(f"MAXRSS_KB {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""

# Our scan in the probe namespace. argv: a JSON file with hosts, signatures and origins.
OURS_SCRIPT = r"""
import json, sys
from ipaddress import IPv4Address
from probe.net.services import scan
from probe.signatures import Signature
spec = json.load(open(sys.argv[1]))
result = scan([(IPv4Address(a), m) for a, m in spec["hosts"]], [Signature(**s) for s in spec["signatures"]],
              origin=spec["origin"])
print(json.dumps({
    "open": sorted(f"{h.address}:{o.port}" for h in result.hosts for o in h.open if o.transport == "tcp"),
    "udp_open": sum(1 for h in result.hosts for o in h.open if o.transport == "udp"),
    "closed": sum(len(h.closed) for h in result.hosts),
    "filtered": sum(len(h.filtered) for h in result.hosts),
    "matches": len(result.matches),
    "seconds": result.seconds,
    "connections": result.connections,
    "peak": result.peak_concurrent,
}))
"""

NMAP_HOST = re.compile(r"^Host: (\S+) .*?Ports: (.*)$")
NMAP_PORT = re.compile(r"(\d+)/(open|closed|filtered|unfiltered|open\|filtered|closed\|filtered)/tcp")
NMAP_DONE = re.compile(r"scanned in ([0-9.]+) seconds")
MAXRSS = re.compile(r"^MAXRSS_KB (\d+)$", re.M)


@dataclass
class Run:
    tool: str
    wall: float
    tool_seconds: float | None = None
    open: set[str] = field(default_factory=set)
    closed: int = 0
    filtered: int = 0
    frames_tx: int = 0
    frames_rx: int = 0
    connections: int | None = None
    peak: int | None = None
    maxrss_mb: float | None = None
    note: str = ""


def frames(lab: Lab) -> tuple[int, int]:
    """Packets sent and received so far by the probe's interface."""
    out = subprocess.run(["ip", "-n", lab.probe_netns, "-j", "-s", "link", "show", "dev", IFACE],
                         capture_output=True, text=True, check=True).stdout
    stats = json.loads(out)[0]["stats64"]
    return stats["tx"]["packets"], stats["rx"]["packets"]


def timed(lab: Lab, argv: list[str]) -> tuple[subprocess.CompletedProcess[str], float, int, int, float | None]:
    """Run argv under the RSS wrapper in the probe namespace: result, wall, frames tx/rx, peak RSS (MB)."""
    tx0, rx0 = frames(lab)
    t0 = time.perf_counter()
    proc = subprocess.run(lab.exec_argv([sys.executable, "-c", RSS_WRAPPER, *argv]), capture_output=True,
                          text=True, cwd=REPO, timeout=TOOL_TIMEOUT)
    wall = time.perf_counter() - t0
    tx1, rx1 = frames(lab)
    rss = MAXRSS.search(proc.stderr)
    return proc, wall, tx1 - tx0, rx1 - rx0, int(rss.group(1)) / 1024 if rss else None


def run_ours(lab: Lab, spec_file: Path) -> Run:
    proc, wall, tx, rx, rss = timed(lab, [sys.executable, "-c", OURS_SCRIPT, str(spec_file)])
    if proc.returncode != 0:
        return Run("ours", wall, note=proc.stderr.strip()[-400:])
    data = json.loads(proc.stdout)
    return Run("ours", wall, data["seconds"], set(data["open"]), data["closed"], data["filtered"], tx, rx,
               data["connections"], data["peak"], rss,
               note=f"{data['matches']} matches, {data['udp_open']} UDP answers")


def run_nmap(lab: Lab, ports: list[int], hosts_file: Path) -> Run:
    argv = ["nmap", "-sT", "-Pn", "-n", "-p", ",".join(map(str, ports)), "-iL", str(hosts_file), "-oG", "-"]
    proc, wall, tx, rx, rss = timed(lab, argv)
    if proc.returncode != 0:
        return Run("nmap -sT", wall, note=proc.stderr.strip()[-400:])
    run = Run("nmap -sT", wall, frames_tx=tx, frames_rx=rx, maxrss_mb=rss)
    for line in proc.stdout.splitlines():
        if (m := NMAP_HOST.match(line)):
            for port, state in NMAP_PORT.findall(m.group(2)):
                if state == "open":
                    run.open.add(f"{m.group(1)}:{port}")
                elif state == "closed":
                    run.closed += 1
                else:
                    run.filtered += 1
        elif (done := NMAP_DONE.search(line)):
            run.tool_seconds = float(done.group(1))
    # nmap leaves out of the grepable line the ports it summarises as "Ignored State"; count those too.
    for state, count in re.findall(r"Ignored State: (\w+) \((\d+)\)", proc.stdout):
        if state == "closed":
            run.closed += int(count)
        elif state == "filtered":
            run.filtered += int(count)
    return run


def scan_set(lab: Lab) -> tuple[list[Signature], dict[str, str], list[int], str]:
    """The signatures and origins our side uses, the TCP ports both scan, and how the set was chosen."""
    shipped = load_ruleset().signatures
    venue = load_profile(lab.staged_profile).servers.signatures
    signatures = effective_signatures(shipped, venue)
    origin = {s.id: "rules" for s in shipped} | {s.id: "profile" for s in venue}
    tcp = sorted({p for s in signatures if s.transport == "tcp" for p in s.ports})
    how = f"the signatures' {len(tcp)} TCP ports"
    if len(tcp) < MIN_PORTS:
        extra = [p for p in TYPICAL if p not in tcp]
        signatures.append(Signature(id="bench-typical", name="基准测试端口 / benchmark-only typical ports",
                                    role="camera", ports=extra, confidence=0.1, confirmed=False,
                                    source="bench/services.py (benchmark only, never shipped)"))
        origin["bench-typical"] = "profile"
        tcp = sorted(set(tcp) | set(extra))
        how = (f"a typical scan set: the signatures' TCP ports plus {', '.join(map(str, extra))} "
               f"(the signatures alone name fewer than {MIN_PORTS})")
    return signatures, origin, tcp, how


def line(run: Run, n: int) -> str:
    extras = "".join(f"  {k} {v}" for k, v in (("conns", run.connections), ("peak", run.peak)) if v is not None)
    seconds = f"{run.tool_seconds:.2f}" if run.tool_seconds is not None else "-"
    rss = f"{run.maxrss_mb:.0f} MB" if run.maxrss_mb is not None else "?"
    return (f"run {n}  {run.tool:9} wall {run.wall:6.2f} s (own {seconds} s)  open {len(run.open):3}  "
            f"closed {run.closed:5}  filtered {run.filtered:5}  frames {run.frames_tx}/{run.frames_rx}  "
            f"RSS {rss}{extras}{'  ' + run.note if run.note else ''}")


def med(values: list[float | int | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenario", default="messy")
    args = parser.parse_args(argv)
    if shutil.which("nmap") is None:
        print("nmap is not installed (run setup.sh)", file=sys.stderr)
        return 2
    results: dict[str, list[Run]] = {"ours": [], "nmap -sT": []}
    with running(args.scenario, new_lab_id("bs")) as lab, tempfile.TemporaryDirectory() as tmp:
        truth = lab.truth()
        hosts = [(h["address"], h["mac"]) for h in truth["live_hosts"]]
        signatures, origin, ports, how = scan_set(lab)
        spec_file, hosts_file = Path(tmp) / "spec.json", Path(tmp) / "hosts.txt"
        spec_file.write_text(json.dumps({"hosts": hosts, "origin": origin,
                                         "signatures": [s.model_dump(mode="json") for s in signatures]}))
        hosts_file.write_text("".join(f"{a}\n" for a, _ in hosts))
        udp = sorted({p for s in signatures if s.transport == "udp" for p in s.ports})
        print(f"{args.scenario}: {len(hosts)} live hosts × {len(ports)} TCP ports ({how}): "
              f"{','.join(map(str, ports))}; ours also UDP {','.join(map(str, udp)) or '-'}", flush=True)
        for n in range(1, args.runs + 1):
            for run in (run_ours(lab, spec_file), run_nmap(lab, ports, hosts_file)):
                results[run.tool].append(run)
                print(line(run, n), flush=True)
    ours, nmap = results["ours"], results["nmap -sT"]
    print(f"\n{args.scenario}: {len(hosts)} hosts × {len(ports)} TCP ports; medians of {args.runs} runs\n")
    print("| tool | wall, s | own time, s | open | closed | filtered | frames tx/rx | connects | peak RSS, MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for tool, runs in results.items():
        own = med([r.tool_seconds for r in runs])
        conns = med([r.connections for r in runs])
        rss = med([r.maxrss_mb for r in runs])
        print(f"| {tool} | {med([r.wall for r in runs]):.2f} | {own:.2f} | {med([len(r.open) for r in runs]):.0f} | "
              f"{med([r.closed for r in runs]):.0f} | {med([r.filtered for r in runs]):.0f} | "
              f"{med([r.frames_tx for r in runs]):.0f}/{med([r.frames_rx for r in runs]):.0f} | "
              f"{'-' if conns is None else f'{conns:.0f}'} | {'?' if rss is None else f'{rss:.0f}'} |")
    ratio = med([n.wall for n in nmap]) / med([o.wall for o in ours])
    print(f"\nwall time nmap / ours: {ratio:.2f} (> 1: ours is faster)")
    for k, (o, m) in enumerate(zip(ours, nmap), start=1):
        both = o.open & m.open
        print(f"run {k} open TCP ports: ours {len(o.open)}, nmap {len(m.open)}, both {len(both)}; "
              f"only ours {sorted(o.open - m.open)[:10]}, only nmap {sorted(m.open - o.open)[:10]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
