"""What the lab serves: the fictional billing, audit and real-name products, the cameras, the terminals' firewall.

Lab-level only (no probe run): a small asyncio prober runs in the probe's
namespace, connects as a scanner would and reports what each port did.
What to expect is read from the lab's ground truth and the staged venue
profile, never written into the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

from lab import netns as ns
from lab.build import running
from probe.net.cameras import build_dhip_probe, build_sadp_probe, build_ws_probe
from probe.profile import load_profile
from tests.conftest import new_lab_id

pytestmark = pytest.mark.lab

# Runs inside the probe's namespace: every task at once, each bounded by its own timeout.
PROBER = r'''
import asyncio, json, socket, sys, time

async def tcp(t):
    loop = asyncio.get_running_loop()
    s = socket.socket()
    s.setblocking(False)
    start = time.monotonic()
    try:
        await asyncio.wait_for(loop.sock_connect(s, (t["address"], t["port"])), t["timeout"])
    except (asyncio.TimeoutError, TimeoutError):
        s.close()
        return {"state": "filtered"}
    except ConnectionRefusedError:
        s.close()
        return {"state": "closed", "ms": (time.monotonic() - start) * 1000}
    if t.get("send"):
        await loop.sock_sendall(s, bytes.fromhex(t["send"]))
    data = b""
    try:
        while len(data) < 4096 and not (t.get("until") and bytes.fromhex(t["until"]) in data):
            chunk = await asyncio.wait_for(loop.sock_recv(s, 4096), t["timeout"])
            if not chunk:
                break
            data += chunk
    except (asyncio.TimeoutError, TimeoutError):
        pass
    await asyncio.sleep(t.get("hold", 0))
    s.close()
    return {"state": "open", "data": data.hex()}

async def udp(t):
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(t["source"]))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.bind((t["source"], 0))
    s.setblocking(False)
    await loop.sock_sendto(s, bytes.fromhex(t["send"]), (t["address"], t["port"]))
    answers = []
    deadline = loop.time() + t["timeout"]
    while (left := deadline - loop.time()) > 0:
        try:
            data, peer = await asyncio.wait_for(loop.sock_recvfrom(s, 65535), left)
        except (asyncio.TimeoutError, TimeoutError):
            break
        answers.append([peer[0], peer[1], data.hex()])
    s.close()
    return {"answers": answers}

async def main(tasks):
    return await asyncio.gather(*((tcp if t["kind"] == "tcp" else udp)(t) for t in tasks))

print(json.dumps(asyncio.run(main(json.loads(sys.stdin.read())))))
'''


def probe_all(lab, tasks: list[dict]) -> list[dict]:
    """Run the prober in the lab's probe namespace; one result per task, in order."""
    proc = subprocess.run(lab.exec_argv([sys.executable, "-c", PROBER]), input=json.dumps(tasks),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def tcp(address: str, port: int, send: bytes | None = None, timeout: float = 1.0, **extra) -> dict:
    return {"kind": "tcp", "address": address, "port": port, "send": send.hex() if send else None,
            "timeout": timeout, **extra}


@pytest.fixture(scope="module")
def lab():
    with running("services", new_lab_id("sv")) as lab:
        yield lab


@pytest.fixture(scope="module")
def truth(lab):
    return lab.truth()


@pytest.fixture(scope="module")
def signatures(truth):
    return {s.product or s.id: s for s in load_profile(truth["profile"]).servers.signatures}


def test_realname_client_answers_where_it_runs_and_is_filtered_where_it_does_not(lab, truth, signatures):
    port, sig = truth["realname"]["port"], signatures[truth["realname"]["product"]]
    live = [t for t in truth["terminals"] if t["power"] == "on"]
    missing = set(truth["realname_missing"])
    assert missing == {t["address"] for t in live if not t["realname"]} and len(missing) / len(live) > 0.05
    results = probe_all(lab, [tcp(t["address"], port) for t in live])
    for t, result in zip(live, results):
        if t["address"] in missing:
            assert result["state"] == ("filtered" if t["firewall"] else "closed"), t
        else:
            answer = bytes.fromhex(result["data"])
            assert result["state"] == "open" and sig.matches(answer), (t, result)
            assert answer.endswith(f"seat={t['name']}".encode())


def test_closed_ports_of_terminals_are_filtered_unless_the_firewall_is_off(lab, truth):
    live = [t for t in truth["terminals"] if t["power"] == "on"]
    open_wall = [t for t in live if not t["firewall"]]
    assert open_wall and len(open_wall) < len(live)
    sample = open_wall + [t for t in live if t["firewall"]][:6]
    results = probe_all(lab, [tcp(t["address"], 445) for t in sample] + [tcp(t["address"], 3389) for t in sample])
    for t, result in zip(sample + sample, results):
        assert result["state"] == ("filtered" if t["firewall"] else "closed"), (t["address"], result)
    # The rules live in each terminal's own namespace (libnftables' netlink socket is made there), none
    # in the daemons' home.
    for t in sample[:3]:
        tables = ns.run_in(lab.nsname(f"t{t['number']}"), ["nft", "list", "tables"])
        assert ("lab_firewall" in tables) == t["firewall"]
    assert "lab_firewall" not in ns.run_in(lab.home_netns, ["nft", "list", "tables"])


def test_billing_servers_answer_their_banners_and_the_stopped_audit_port_is_closed(lab, truth, signatures):
    servers = truth["billing"] + truth["audit"]
    assert {s["product"] for s in truth["billing"]} == {"labbill-alpha", "labbill-beta"}
    assert [a["running"] for a in truth["audit"]] == [False]
    results = probe_all(lab, [tcp(s["address"], s["port"], signatures[s["product"]].payload) for s in servers])
    for server, result in zip(servers, results):
        if server["running"]:
            assert result["state"] == "open", server
            assert signatures[server["product"]].matches(bytes.fromhex(result["data"])), (server, result)
        else:
            # "closed" is a reset before the prober's connect timeout; a dropped SYN would be "filtered".
            assert result["state"] == "closed", (server, result)


def test_a_running_audit_server_answers_its_status_and_rejects_other_lines(tmp_path):
    """The services scenario stops its audit server; small runs one."""
    with running("small", new_lab_id("sa")) as small:
        t = small.truth()
        sig = {s.product: s for s in load_profile(t["profile"]).servers.signatures}["labaudit"]
        (audit,) = t["audit"]
        good, bad = probe_all(small, [tcp(audit["address"], audit["port"], sig.payload),
                                      tcp(audit["address"], audit["port"], b"HELLO\r\n")])
        assert sig.matches(bytes.fromhex(good["data"]))
        assert bad["state"] == "open" and not sig.matches(bytes.fromhex(bad["data"]))


def test_cameras_answer_rtsp_and_their_vendors_discovery(lab, truth, signatures):
    cameras = truth["cameras"]
    assert {c["kind"] for c in cameras} == {"camera", "nvr"}
    source = truth["probe"]["address"]
    rtsp = [tcp(c["address"], 554, f"OPTIONS rtsp://{c['address']}/ RTSP/1.0\r\nCSeq: 7\r\n\r\n".encode(),
                until=b"\r\n\r\n".hex()) for c in cameras]
    discovery = [
        {"kind": "udp", "source": source, "address": "239.255.255.250", "port": 3702, "timeout": 1.5,
         "send": build_ws_probe(f"urn:uuid:{uuid.uuid4()}", "tds:Device").hex()},
        {"kind": "udp", "source": source, "address": "239.255.255.250", "port": 37020, "timeout": 1.5,
         "send": build_sadp_probe(str(uuid.uuid4()).upper()).hex()},
        {"kind": "udp", "source": source, "address": str(lab.scenario.lan.subnet.broadcast_address),
         "port": 37810, "timeout": 1.5, "send": build_dhip_probe().hex()},
    ]
    nvr_sig = next(s for s in signatures.values() if s.role == "nvr")
    nvr_check = [{"kind": "udp", "source": source, "address": c["address"], "port": 37020, "timeout": 1.0,
                  "send": nvr_sig.payload.hex()} for c in cameras if c["vendor"] == "hikvision"]
    results = probe_all(lab, rtsp + discovery + nvr_check)
    for camera, result in zip(cameras, results):
        assert result["state"] == "open", camera
        assert bytes.fromhex(result["data"]).startswith(b"RTSP/1.0 200 OK\r\nCSeq: 7\r\n"), result
    wsd, sadp, dhip = ({a[0] for a in r["answers"]} for r in results[len(rtsp):len(rtsp) + 3])
    assert wsd == {c["address"] for c in cameras if c["onvif"]}
    assert sadp == {c["address"] for c in cameras if c["vendor"] == "hikvision"}
    assert dhip == {c["address"] for c in cameras if c["vendor"] == "dahua"}
    hikvision = [c for c in cameras if c["vendor"] == "hikvision"]
    for camera, result in zip(hikvision, results[len(rtsp) + 3:]):
        (answer,) = result["answers"]
        assert nvr_sig.matches(bytes.fromhex(answer[2])) == (camera["kind"] == "nvr"), camera


def test_the_stats_file_reports_the_most_connections_open_at_once(lab, truth):
    alpha = next(b for b in truth["billing"] if b["product"] == "labbill-alpha")
    terminal = next(t for t in truth["terminals"] if t["power"] == "on" and t["realname"])
    # The reset is a signal: the burst must come after the daemon took it. It restarts its counts before it
    # writes them, so the next counts read show it taken. The deadlines only catch a hung daemon.
    lab.service_stats(reset=True, timeout=30)
    deadline = time.monotonic() + 30
    while lab.service_stats(timeout=30)["max_open"] and time.monotonic() < deadline:
        time.sleep(0.05)
    burst = [tcp(alpha["address"], alpha["port"], hold=1.0)] * 12
    burst += [tcp(terminal["address"], truth["realname"]["port"], hold=1.0)] * 5
    assert all(r["state"] == "open" for r in probe_all(lab, burst))
    deadline = time.monotonic() + 30
    while (stats := lab.service_stats(timeout=30))["open_now"] and time.monotonic() < deadline:
        time.sleep(0.1)
    by_listener = {(item["address"], item["port"]): item for item in stats["listeners"]}
    assert by_listener[(alpha["address"], alpha["port"])]["max_open"] == 12
    assert by_listener[(alpha["address"], alpha["port"])]["accepted"] == 12
    assert by_listener[(terminal["address"], truth["realname"]["port"])]["max_open"] == 5
    assert stats["max_open"] == 17 and stats["open_now"] == 0
    assert stats["seq"] >= 2 and json.loads(lab.stats_path.read_text())["seq"] == stats["seq"]


def test_teardown_leaves_no_namespace_and_no_process():
    lab_id = new_lab_id("st")
    with running("services", lab_id) as lab:
        names = list(lab._state["namespaces"])
        records = [ns.ProcRecord(**r) for r in lab._state["processes"]]
        assert {"terminals", "services"} <= {r.what for r in records}
        assert all(ns.is_running(r) for r in records)
        assert {lab.nsname("b2"), lab.nsname("a1"), lab.nsname("c4"), lab.home_netns} <= set(names)
    assert not any(ns.netns_exists(n) for n in names)
    assert not any(ns.is_running(r) for r in records)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"{lab_id}-" not in listed
