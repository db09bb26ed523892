"""Discovery benchmark: our ARP sweep against arp-scan and nmap, inside a lab café.

Run as root from the repository root with the project's virtualenv python:

    python bench/discovery.py [--runs 3] [--scenarios messy,big] [--loss 0,5]

For each scenario the lab is built once (``lab.build.running``) and torn down
afterwards whatever happens, Ctrl-C included; the switch loss is changed with
``Lab.set_loss`` between loss levels. Every tool runs only inside the lab's
probe namespace (``Lab.exec_argv``) against the lab's own LAN (198.18.0.0/15),
as DESIGN.md section 2 requires. Per scenario, loss level and run it measures:

* ours: ``probe.net.arp.sweep`` over ``RawLink("eth0")`` in a child python;
  the child reports the in-process sweep seconds, the addresses found and its
  own peak RSS; the whole process's wall time is measured from outside too;
* ``arp-scan -I eth0 SUBNET`` with default settings;
* ``arp-scan --retry=3 -I eth0 SUBNET``;
* ``nmap -sn -PR -n SUBNET``.

Recall is |found ∩ live| / |live|, live being every host of
``Lab.truth()['live_hosts']`` (router and terminals). On the messy scenario it
also measures the peak RSS of one full ``cafe-probe run`` against the 150 MB
target. It ends with a markdown table for the README and the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab.build import Lab, LabError, running  # noqa: E402
from probe.home import ProbeHome  # noqa: E402

IFACE = "eth0"
RSS_TARGET_MB = 150.0
TOOL_TIMEOUT = 900.0

# The child run inside the probe namespace for "ours". argv: iface subnet probe_ip
SWEEP_SCRIPT = r"""
import json, resource, sys, time
from ipaddress import IPv4Address, IPv4Network
from probe.net import arp
from probe.net.link import RawLink
iface, subnet, me = sys.argv[1:4]
with RawLink(iface) as link:
    t0 = time.perf_counter()
    result = arp.sweep(link, [IPv4Network(subnet)], IPv4Address(me))
    seconds = time.perf_counter() - t0
    sent = link.sent
print(json.dumps({
    "seconds": seconds,
    "reported_seconds": result.seconds,
    "found": sorted({str(h.address) for h in result.hosts}),
    "rounds": [[r.asked, r.answered, r.seconds] for r in result.rounds],
    "frames_sent": sent,
    "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
"""

ARP_SCAN_LINE = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3})\t([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})\t")
ARP_SCAN_DONE = re.compile(r"scanned in ([0-9.]+) seconds")
NMAP_REPORT = re.compile(r"^Nmap scan report for (\d{1,3}(?:\.\d{1,3}){3})\s*$")
NMAP_DONE = re.compile(r"Nmap done: .* scanned in ([0-9.]+) seconds")

TOOLS = ("ours", "arp-scan", "arp-scan --retry=3", "nmap -sn -PR")


@dataclass
class Run:
    """One run of one tool."""

    tool: str
    ok: bool
    wall: float  # seconds around the whole process, measured here
    found: set[str] = field(default_factory=set)
    recall: float = 0.0
    extra: int = 0  # reported addresses that are not live hosts (nor the probe)
    sweep: float | None = None  # ours: in-process sweep seconds
    self_reported: float | None = None  # arp-scan / nmap: "scanned in N seconds"
    maxrss_mb: float | None = None  # ours: the child's own peak RSS
    detail: str = ""


# -- running tools ------------------------------------------------------------

def _timed(argv: list[str]) -> tuple[subprocess.CompletedProcess[str] | None, float, str]:
    """Run argv, capturing both streams; returns (result or None on timeout, wall seconds, error)."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=str(REPO), timeout=TOOL_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return None, time.perf_counter() - t0, f"timed out after {TOOL_TIMEOUT:.0f} s; stderr: {err[-2000:]}"
    return proc, time.perf_counter() - t0, ""


def _failed(tool: str, argv: list[str], wall: float, why: str, proc: subprocess.CompletedProcess[str] | None) -> Run:
    print(f"    !! {tool} FAILED: {why}", flush=True)
    print(f"       command: {shlex.join(argv)}", flush=True)
    if proc is not None:
        if proc.stderr.strip():
            print("       stderr:\n" + _indent(proc.stderr.strip()[-3000:]), flush=True)
        if proc.stdout.strip():
            print("       stdout (tail):\n" + _indent(proc.stdout.strip()[-1500:]), flush=True)
    return Run(tool, ok=False, wall=wall, detail=why)


_seen_stderr: set[tuple[str, str]] = set()


def _note_stderr(tool: str, proc: subprocess.CompletedProcess[str]) -> None:
    """A successful tool's stderr is not thrown away: shown once per distinct text."""
    text = proc.stderr.strip()
    if text and (tool, text) not in _seen_stderr:
        _seen_stderr.add((tool, text))
        print(f"    [{tool} stderr]\n" + _indent(text[-1500:]), flush=True)


def _indent(text: str, pad: str = "         ") -> str:
    return "\n".join(pad + line for line in text.splitlines())


def run_ours(lab: Lab, subnet: str, probe_ip: str) -> Run:
    argv = lab.exec_argv([sys.executable, "-c", SWEEP_SCRIPT, IFACE, subnet, probe_ip])
    proc, wall, err = _timed(argv)
    if proc is None:
        return _failed("ours", argv, wall, err, None)
    if proc.returncode != 0:
        return _failed("ours", argv, wall, f"exit status {proc.returncode}", proc)
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return _failed("ours", argv, wall, "no JSON result on stdout", proc)
    _note_stderr("ours", proc)
    return Run("ours", ok=True, wall=wall, found=set(data["found"]), sweep=data["seconds"],
               maxrss_mb=data["maxrss_kb"] / 1024,
               detail=f"rounds(asked,answered,s)={data['rounds']} frames_sent={data['frames_sent']}")


def run_arp_scan(lab: Lab, subnet: str, tool: str, extra_args: list[str]) -> Run:
    argv = lab.exec_argv(["arp-scan", *extra_args, "-I", IFACE, subnet])
    proc, wall, err = _timed(argv)
    if proc is None:
        return _failed(tool, argv, wall, err, None)
    if proc.returncode != 0:
        return _failed(tool, argv, wall, f"exit status {proc.returncode}", proc)
    found = {m.group(1) for line in proc.stdout.splitlines() if (m := ARP_SCAN_LINE.match(line))}
    done = ARP_SCAN_DONE.search(proc.stdout)
    if done is None:
        return _failed(tool, argv, wall, "no 'Ending arp-scan ... scanned in' summary in its output", proc)
    _note_stderr(tool, proc)
    return Run(tool, ok=True, wall=wall, found=found, self_reported=float(done.group(1)))


def run_nmap(lab: Lab, subnet: str, probe_ip: str) -> Run:
    tool = "nmap -sn -PR"
    argv = lab.exec_argv(["nmap", "-sn", "-PR", "-n", subnet])
    proc, wall, err = _timed(argv)
    if proc is None:
        return _failed(tool, argv, wall, err, None)
    if proc.returncode != 0:
        return _failed(tool, argv, wall, f"exit status {proc.returncode}", proc)
    found = {m.group(1) for line in proc.stdout.splitlines() if (m := NMAP_REPORT.match(line.strip()))}
    found.discard(probe_ip)  # nmap lists the scanning host itself as up
    done = NMAP_DONE.search(proc.stdout)
    if done is None:
        return _failed(tool, argv, wall, "no 'Nmap done' summary in its output", proc)
    _note_stderr(tool, proc)
    return Run(tool, ok=True, wall=wall, found=found, self_reported=float(done.group(1)))


def score(run: Run, live: set[str], probe_ip: str) -> Run:
    if run.ok:
        run.recall = len(run.found & live) / len(live) if live else 1.0
        run.extra = len(run.found - live - {probe_ip})
    return run


# -- reporting ----------------------------------------------------------------

def _med(values: list[float]) -> float:
    return statistics.median(values)


def summarise(runs: list[Run]) -> dict[str, Any]:
    ok = [r for r in runs if r.ok]
    s: dict[str, Any] = {"n": len(runs), "n_ok": len(ok)}
    if not ok:
        return s
    walls = [r.wall for r in ok]
    recalls = [r.recall for r in ok]
    s.update(wall_med=_med(walls), wall_min=min(walls), wall_max=max(walls),
             recall_med=_med(recalls), recall_min=min(recalls), extra_max=max(r.extra for r in ok))
    if ok[0].sweep is not None:
        sweeps = [r.sweep for r in ok if r.sweep is not None]
        s.update(sweep_med=_med(sweeps), sweep_min=min(sweeps), sweep_max=max(sweeps),
                 rss_max=max(r.maxrss_mb or 0.0 for r in ok))
    reported = [r.self_reported for r in ok if r.self_reported is not None]
    if reported:
        s["reported_med"] = _med(reported)
    return s


def print_table(scenario: str, loss: float, live_n: int, stats: dict[str, dict[str, Any]]) -> None:
    print(f"\n=== {scenario}, loss {loss:g} %, {live_n} live hosts ===")
    head = (f"{'tool':<26} {'runs ok':>7} {'median s':>9} {'min s':>7} {'max s':>7} "
            f"{'recall med':>10} {'recall min':>10} {'extra':>5}  {'tool-reported s':>15}")
    print(head)
    print("-" * len(head))

    def row(label: str, s: dict[str, Any], med: str, lo: str, hi: str, reported: str = "") -> None:
        if not s.get("n_ok"):
            print(f"{label:<26} {'0/' + str(s['n']):>7}  FAILED (see the errors above)")
            return
        print(f"{label:<26} {str(s['n_ok']) + '/' + str(s['n']):>7} {s[med]:>9.3f} {s[lo]:>7.3f} {s[hi]:>7.3f} "
              f"{s['recall_med']:>10.3f} {s['recall_min']:>10.3f} {s['extra_max']:>5}  {reported:>15}")

    ours = stats["ours"]
    row("ours: sweep (in-process)", ours, "sweep_med", "sweep_min", "sweep_max")
    row("ours: process wall", ours, "wall_med", "wall_min", "wall_max")
    for tool in TOOLS[1:]:
        s = stats[tool]
        rep = f"{s['reported_med']:.3f}" if "reported_med" in s else ""
        row(tool, s, "wall_med", "wall_min", "wall_max", rep)
    if ours.get("n_ok"):
        print(f"ours: child peak RSS {ours['rss_max']:.1f} MB (max over runs)")
    print("ours/peer median-time ratio (lower is better; primary = in-process sweep time,"
          " also shown: ours' process wall time incl. interpreter start-up; peers always process wall time):")
    for tool in TOOLS[1:]:
        s = stats[tool]
        if ours.get("n_ok") and s.get("n_ok"):
            print(f"  vs {tool:<20} sweep/peer = {ours['sweep_med'] / s['wall_med']:6.3f}    "
                  f"process-wall/peer = {ours['wall_med'] / s['wall_med']:6.3f}")
        else:
            print(f"  vs {tool:<20} n/a (a side failed)")


def markdown(results: list[tuple[str, float, int, dict[str, dict[str, Any]]]], memory: dict[str, Any] | None,
             runs: int) -> str:
    lines = ["| scenario | loss | tool | median time (s) | min–max (s) | recall (median / min) | ours ÷ tool |",
             "|---|---|---|---|---|---|---|"]
    for scenario, loss, live_n, stats in results:
        ours = stats["ours"]
        label = f"{scenario} ({live_n} live)"

        def cell(s: dict[str, Any], med: str, lo: str, hi: str) -> tuple[str, str, str]:
            if not s.get("n_ok"):
                return "failed", "", ""
            partial = "" if s["n_ok"] == s["n"] else f" ({s['n_ok']}/{s['n']} ok)"
            return (f"{s[med]:.2f}{partial}", f"{s[lo]:.2f}–{s[hi]:.2f}",
                    f"{s['recall_med']:.3f} / {s['recall_min']:.3f}")

        t, mm, rc = cell(ours, "sweep_med", "sweep_min", "sweep_max")
        lines.append(f"| {label} | {loss:g} % | **cafe-probe sweep** (in-process) | {t} | {mm} | {rc} | — |")
        t, mm, rc = cell(ours, "wall_med", "wall_min", "wall_max")
        lines.append(f"| {label} | {loss:g} % | cafe-probe sweep (process, incl. start-up) | {t} | {mm} | {rc} | — |")
        for tool in TOOLS[1:]:
            s = stats[tool]
            t, mm, rc = cell(s, "wall_med", "wall_min", "wall_max")
            if ours.get("n_ok") and s.get("n_ok"):
                ratio = f"{ours['sweep_med'] / s['wall_med']:.2f} ({ours['wall_med'] / s['wall_med']:.2f} process)"
            else:
                ratio = "n/a"
            lines.append(f"| {label} | {loss:g} % | `{tool}` | {t} | {mm} | {rc} | {ratio} |")
    out = "\n".join(lines)
    out += (f"\n\nMedians of {runs} runs each. Times of arp-scan and nmap are wall time around the process;"
            " \"ours ÷ tool\" divides our in-process sweep time (in brackets: our whole process,"
            " interpreter start-up included) by the tool's; lower is better.")
    if memory is not None:
        if memory.get("ok"):
            verdict = "within" if memory["peak_mb"] <= RSS_TARGET_MB else "OVER"
            out += (f"\n\nPeak memory of a full `cafe-probe run` on messy: **{memory['peak_mb']:.1f} MB**"
                    f" ({verdict} the {RSS_TARGET_MB:.0f} MB target; {memory['source']}).")
        else:
            out += "\n\nPeak memory of a full `cafe-probe run` on messy: run failed (see above)."
    return out


# -- the memory run -----------------------------------------------------------

def measure_run_memory(lab: Lab, truth: dict[str, Any]) -> dict[str, Any]:
    """One full ``cafe-probe run`` inside the probe namespace; the child's peak RSS."""
    venv_probe = Path(sys.executable).parent / "cafe-probe"
    probe_cmd = str(venv_probe) if venv_probe.exists() else shutil.which("cafe-probe")
    if probe_cmd is None:
        print("  !! cafe-probe executable not found next to this python or on PATH")
        return {"ok": False}
    gnu_time = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        out_dir = Path(tmp) / "out"
        time_file = Path(tmp) / "time.txt"
        home = Path(tmp) / "probe-home"  # a throw-away signing key: the run signs and queues its report
        ProbeHome(home).keygen("bench-probe")
        inner = [probe_cmd, "run", "--profile", truth["profile"], "--iface", IFACE, "--out", str(out_dir),
                 "--home", str(home)]
        if gnu_time:
            inner = [gnu_time, "-v", "-o", str(time_file), *inner]
        argv = lab.exec_argv(inner)
        print(f"  command: {shlex.join(argv)}", flush=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc, wall, err = _timed(argv)
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc is None or proc.returncode != 0:
            _failed("cafe-probe run", argv, wall, err or f"exit status {proc.returncode}", proc)
            return {"ok": False}
        _note_stderr("cafe-probe run", proc)
        peak_kb: float | None = None
        source = ""
        if gnu_time and time_file.exists():
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_file.read_text())
            if m:
                peak_kb, source = float(m.group(1)), "GNU time -v, maximum resident set size"
        children_note = (f"{after / 1024:.1f} MB" if after > before
                         else f"not attributable (children's max was already {before / 1024:.1f} MB)")
        if peak_kb is None:
            if after <= before:
                print("  !! could not attribute a peak RSS to the run (no GNU time, RUSAGE_CHILDREN unchanged)")
                return {"ok": False}
            peak_kb, source = float(after), "getrusage(RUSAGE_CHILDREN).ru_maxrss"
        outputs = sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []
        peak_mb = peak_kb / 1024
        print(f"  exit 0 in {wall:.2f} s wall; outputs: {', '.join(outputs) or '(none)'}")
        print(f"  peak RSS of the run: {peak_mb:.1f} MB ({source}); RUSAGE_CHILDREN cross-check: {children_note}")
        print(f"  target {RSS_TARGET_MB:.0f} MB: {'OK' if peak_mb <= RSS_TARGET_MB else 'OVER TARGET'}"
              f" ({peak_mb / RSS_TARGET_MB * 100:.0f} % of it)", flush=True)
        return {"ok": True, "peak_mb": peak_mb, "source": source, "wall": wall}


# -- main -----------------------------------------------------------------------

def _first_line(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return lines[0].strip() if lines else f"{argv[0]}: no version output"


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs per tool, scenario and loss (default 3)")
    p.add_argument("--scenarios", default="messy,big", help="comma-separated lab scenarios (default messy,big)")
    p.add_argument("--loss", default="0,5", help="comma-separated switch loss percentages (default 0,5)")
    p.add_argument("--lab-id", default="bench", help="lab id, prefix of its namespaces (default bench)")
    p.add_argument("--no-memory", action="store_true", help="skip the full 'cafe-probe run' memory measurement")
    p.add_argument("--json", type=Path, help="also write every run's raw figures to this file")
    args = p.parse_args(argv)
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.loss_list = [float(x) for x in args.loss.split(",") if x.strip()]
    if args.runs < 1 or not args.scenario_list or not args.loss_list:
        p.error("need --runs >= 1, at least one scenario and one loss level")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/discovery.py needs root (it builds a lab café in network namespaces)", file=sys.stderr)
        return 2
    for tool in ("arp-scan", "nmap", "ip"):
        if shutil.which(tool) is None:
            print(f"'{tool}' is not installed", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, _sigterm)
    command = f"cd {shlex.quote(str(Path.cwd()))} && {shlex.join([sys.executable, *sys.argv])}"
    print(f"# discovery benchmark  {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    print(f"# command: {command}")
    print(f"# host: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
          f"{_first_line(['arp-scan', '--version'])}, {_first_line(['nmap', '--version'])}")

    results: list[tuple[str, float, int, dict[str, dict[str, Any]]]] = []
    raw: list[dict[str, Any]] = []
    memory: dict[str, Any] | None = None
    try:
        for scenario in args.scenario_list:
            t_build = time.perf_counter()
            print(f"\n## building lab '{scenario}' (id {args.lab_id}) ...", flush=True)
            with running(scenario, lab_id=args.lab_id, loss=args.loss_list[0]) as lab:
                print(f"   built in {time.perf_counter() - t_build:.1f} s", flush=True)
                truth = lab.truth()
                subnet = truth["lan"]["subnet"]
                probe_ip = truth["probe"]["address"]
                live = {h["address"] for h in truth["live_hosts"]}
                for loss in args.loss_list:
                    lab.set_loss(loss)
                    print(f"\n-- {scenario} {subnet}, loss {loss:g} %, {len(live)} live hosts, probe {probe_ip}",
                          flush=True)
                    per_tool: dict[str, list[Run]] = {t: [] for t in TOOLS}
                    for i in range(1, args.runs + 1):
                        # Interleaved, so drift in the host's load hits every tool alike.
                        batch = [
                            run_ours(lab, subnet, probe_ip),
                            run_arp_scan(lab, subnet, "arp-scan", []),
                            run_arp_scan(lab, subnet, "arp-scan --retry=3", ["--retry=3"]),
                            run_nmap(lab, subnet, probe_ip),
                        ]
                        for r in batch:
                            score(r, live, probe_ip)
                            per_tool[r.tool].append(r)
                            timing = (f"sweep {r.sweep:.3f} s, process {r.wall:.3f} s, RSS {r.maxrss_mb:.1f} MB"
                                      if r.sweep is not None else f"wall {r.wall:.3f} s")
                            status = (f"recall {r.recall:.3f} ({len(r.found & live)}/{len(live)}), extra {r.extra}"
                                      if r.ok else "FAILED")
                            print(f"  run {i} {r.tool:<20} {timing:<46} {status}"
                                  + (f"  {r.detail}" if r.ok and r.detail else ""), flush=True)
                            raw.append({"scenario": scenario, "loss": loss, "run": i, "tool": r.tool, "ok": r.ok,
                                        "wall": r.wall, "sweep": r.sweep, "recall": r.recall, "extra": r.extra,
                                        "self_reported": r.self_reported, "maxrss_mb": r.maxrss_mb,
                                        "missed": sorted(live - r.found) if r.ok else None, "detail": r.detail})
                    stats = {t: summarise(rs) for t, rs in per_tool.items()}
                    results.append((scenario, loss, len(live), stats))
                    print_table(scenario, loss, len(live), stats)
                if scenario == "messy" and not args.no_memory:
                    lab.set_loss(0)
                    print("\n-- peak memory of a full 'cafe-probe run' on messy (loss 0 %)", flush=True)
                    memory = measure_run_memory(lab, truth)
                print(f"\n## tearing down lab '{scenario}' ...", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted; the lab has been torn down", file=sys.stderr)
        return 130
    except LabError as exc:
        print(f"lab error: {exc}", file=sys.stderr)
        return 1
    finally:
        left = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if n.startswith(f"{args.lab_id}-")]
        print(f"\nnamespaces of lab '{args.lab_id}' left: {len(left)}" + (f" ({' '.join(left[:5])} ...)" if left else ""))

    if args.json:
        args.json.write_text(json.dumps({"command": command, "runs": raw, "memory": memory}, indent=1))
        print(f"raw figures written to {args.json}")
    print("\n## for the README\n")
    print(markdown(results, memory, args.runs))
    print(f"\nCommand: `{command}`")
    failed = any(not s.get("n_ok") for _, _, _, st in results for s in st.values())
    return 1 if failed or (memory is not None and not memory.get("ok")) else 0


if __name__ == "__main__":
    sys.exit(main())
