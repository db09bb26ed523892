"""Forwarding-test benchmark: 250 live hosts, two of them forwarding, inside a lab café.

Run as root from the repository root with the project's virtualenv python:

    python bench/forwarding.py [--runs 3] [--follow 0] [--loss 0]

It builds the small scenario's café in code with 248 terminals (plus the
lab's router: 249 live hosts) and one more router (the scenario's
``routers`` key) that forwards over the second ISP but never sends ICMP, so
250 live hosts, of which 2 forward: the lab router (found by time-exceeded)
and the silent one (found by the target's TCP answer). The
probe side runs in a child python inside the lab's probe namespace
(``Lab.exec_argv``): an ARP sweep names the hosts, as in a run, then
:func:`probe.net.forwarding.probe_forwarding` with its defaults is timed.
Everything is torn down in ``finally``, Ctrl-C included. Target: < 5 s wall
for the forwarding test.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab.build import Lab  # noqa: E402
from lab.scenario import RouterSpec, load_scenario  # noqa: E402

TERMINALS = 248
TARGET_SECONDS = 5.0


def _scenario():
    """small.yaml with 248 terminals from .2 upwards (the probe is .250), plus a router at .251
    that forwards over the second ISP but never sends ICMP."""
    sc = load_scenario("small").model_copy(deep=True)
    sc.terminals.count = TERMINALS
    sc.terminals.first_address = sc.lan.subnet.network_address + 2
    sc.terminals.overrides = []
    sc.routers = [RouterSpec(address=sc.lan.subnet.network_address + 251, isp="second", icmp=False)]
    return sc


INNER = r"""
import json, resource, sys, time
from ipaddress import IPv4Address, IPv4Network
from probe.net.arp import sweep
from probe.net.forwarding import probe_forwarding
from probe.net.link import RawLink
iface, subnet, me, target, follow = sys.argv[1:6]
with RawLink(iface) as link:
    hosts = [(h.address, h.mac) for h in sweep(link, [IPv4Network(subnet)], IPv4Address(me)).hosts]
    before = link.sent
    t0 = time.perf_counter()
    result = probe_forwarding(link, hosts, IPv4Address(me), IPv4Address(target), follow_hops=int(follow))
    wall = time.perf_counter() - t0
    frames = link.sent - before
print(json.dumps({"wall": wall, "frames": frames, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "result": result.model_dump(mode="json")}))
"""


def _run_once(lab: Lab, target: str, follow: int) -> dict:
    sc = lab.scenario
    argv = lab.exec_argv([sys.executable, "-c", INNER, "eth0", str(sc.lan.subnet), str(sc.lan.probe), target,
                          str(follow)])
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=str(REPO), timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"探测进程失败 / the probe child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["process_wall"] = time.perf_counter() - t0
    return data


def _report(n: int, data: dict, expected: dict[str, str]) -> bool:
    r = data["result"]
    found = {f["address"]: f["how"] for f in r["forwarders"]}
    ok = found == expected and data["wall"] < TARGET_SECONDS
    paths = {f["address"]: [h["address"] for h in f["path"]] for f in r["forwarders"] if f["path"]}
    print(f"run {n}: {data['wall']:.2f} s wall (child process {data['process_wall']:.2f} s with sweep and start-up)"
          f"; hosts {r['hosts']}; forwarders {len(found)}/{len(expected)} "
          f"{'OK' if found == expected else f'MISMATCH found={found} expected={expected}'}; "
          f"frames {data['frames']} (ttl1 {r['ttl1_sent']}, syn {r['syn_sent']}, follow {r['follow_sent']}); "
          f"peak RSS {data['maxrss_kb'] / 1024:.1f} MB" + (f"; paths {paths}" if paths else ""), flush=True)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--follow", type=int, default=0, help="follow_hops for every run")
    parser.add_argument("--loss", type=float, default=0.0, help="switch loss in percent")
    args = parser.parse_args()
    lab = Lab(_scenario(), "fb" + secrets.token_hex(3))
    t0 = time.perf_counter()
    try:
        lab.up()
        extra_address = lab.scenario.routers[0].address
        if args.loss:
            lab.set_loss(args.loss)
        sc = lab.scenario
        target = str(sc.isp.hosts[0])
        live = 1 + TERMINALS + 1
        print(f"lab {lab.id} up in {time.perf_counter() - t0:.1f} s: {live} live hosts, "
              f"loss {args.loss} %, follow_hops {args.follow}", flush=True)
        expected = {str(sc.lan.router): "ttl_exceeded", str(extra_address): "tcp_answer"}
        results = [_report(n, _run_once(lab, target, args.follow), expected) for n in range(1, args.runs + 1)]
    finally:
        lab.down()
    print(f"{sum(results)}/{len(results)} runs found exactly the expected forwarders in < {TARGET_SECONDS:.0f} s")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
