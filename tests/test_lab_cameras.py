"""The camera survey against real sockets: simulated cameras in their own namespaces, the probe in another.

The fixture builds its own café (a bridge as a dumb switch, the probe on
198.18.95.250/24, one namespace per device, one namespace holding 246
"Windows PCs" whose firewall drops TCP 554 and the discovery ports) and
always removes it. Each camera runs ``python -m lab.camera_sim --serve``
started with lab.netns.spawn and stopped by its own PID.
"""

from __future__ import annotations

import json
import math
import select
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import rdpcap

from lab import netns
from lab.camera_sim import CameraSpec
from probe.net.cameras import survey
from probe.net.link import RawLink, mac_str
from tests.conftest import new_lab_id

pytestmark = pytest.mark.lab

A = IPv4Address
LAN = IPv4Network("198.18.95.0/24")
PROBE_IP = A("198.18.95.250")
SPECS = {
    "onv": CameraSpec("198.18.95.10", "02:00:00:00:95:0a", "camera", "generic", True, True,
                      "LAB-IPC-1 (fictional)", "LAB-IPC-1-0001"),
    "hik": CameraSpec("198.18.95.11", "02:00:00:00:95:0b", "camera", "hikvision", False, True,
                      "LAB-IPC-2 (fictional)", "LAB-IPC-2-0002"),
    "dah": CameraSpec("198.18.95.12", "02:00:00:00:95:0c", "nvr", "dahua", False, True,
                      "LAB-NVR-1 (fictional)", "LAB-NVR-1-0003"),
}
PLAIN = ("198.18.95.20", "02:00:00:00:95:14")
PCS_MAC = "02:00:00:00:95:fe"
PCS = [f"198.18.95.{n}" for n in range(1, 255) if n not in (10, 11, 12, 20, 250)][:246]
FIREWALL = ("table inet lab_pc_fw {\n chain input {\n  type filter hook input priority 0;\n"
            "  tcp dport 554 drop\n  udp dport { 3702, 37020, 37810 } drop\n }\n}\n")


def _wait_ready(proc: subprocess.Popen, log: Path, timeout: float = 15.0) -> None:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("ready"):
        raise RuntimeError(f"camera responder did not start: {log.read_text()[-800:]}")


@pytest.fixture(scope="module")
def camera_lab(tmp_path_factory: pytest.TempPathFactory):
    """The switch, the probe, three cameras, a plain host and 246 firewalled PCs; removed whatever happens."""
    tmp = tmp_path_factory.mktemp("camera-lab")
    lab = new_lab_id("cm")
    sw, probe = f"{lab}-sw", f"{lab}-pr"
    devices = {**{k: (s.address, s.mac) for k, s in SPECS.items()}, "pln": PLAIN, "pcs": (PCS[0], PCS_MAC)}
    names = [sw, probe, *(f"{lab}-{k}" for k in devices)]
    procs = []
    try:
        netns.add_ipv4_namespaces(names)
        # No multicast snooping: the café's switch is an unmanaged one that floods multicast.
        netns.ip_batch(["link add br0 type bridge mcast_snooping 0", "link set br0 up",
                        f"link add p-pr type veth peer name eth0 netns {probe}", "link set p-pr master br0 up"]
                       + [line for k, (_, mac) in devices.items() for line in (
                           f"link add p-{k} type veth peer name eth0 address {mac} netns {lab}-{k}",
                           f"link set p-{k} master br0 up")], netns=sw)
        netns.ip_batch(["link set lo up", "link set eth0 up", f"addr add {PROBE_IP}/24 dev eth0"], netns=probe)
        for k, (address, _) in devices.items():
            netns.ip_batch(["link set lo up", "link set eth0 up", f"addr add {address}/24 dev eth0"],
                           netns=f"{lab}-{k}")
        netns.ip_batch((f"addr add {a}/24 dev eth0" for a in PCS[1:]), netns=f"{lab}-pcs")
        netns.run_in(f"{lab}-pcs", ["nft", "-f", "-"], stdin=FIREWALL)
        for k, spec in SPECS.items():
            path = tmp / f"{k}.json"
            path.write_text(json.dumps(spec.to_json()))
            log = tmp / f"{k}.log"
            proc, rec = netns.spawn(f"{lab}-{k}", [sys.executable, "-m", "lab.camera_sim", "--serve", str(path)],
                                    f"camera {k}", log, stdout=subprocess.PIPE,
                                    cwd=str(Path(__file__).resolve().parent.parent))
            procs.append((proc, rec))
            _wait_ready(proc, log)
        yield {"probe": probe, "tmp": tmp}
    finally:
        for proc, rec in procs:
            netns.stop(rec)
            proc.wait(timeout=5)  # already reaped by stop: this only lets the Popen object know
            if proc.stdout:
                proc.stdout.close()
        netns.ip_batch((f"netns del {n}" for n in names if netns.netns_exists(n)), force=True)
        assert not any(netns.netns_exists(n) for n in names)
        assert not any(netns.is_running(rec) for _, rec in procs)


def _run(camera_lab, hosts, pcap: Path, **kw):
    # The raw link, the held answer port and the RTSP connections all belong in the probe's namespace.
    with netns.inside(camera_lab["probe"]):
        link = RawLink("eth0", pcap)
        try:
            return survey(link, hosts, PROBE_IP, **kw), mac_str(link.mac)
        finally:
            link.close()


def _sent_by_probe(pcap: Path, probe_mac: str) -> list[Ether]:
    return [p for p in rdpcap(str(pcap)) if p.src == probe_mac]


def _assert_stayed_on_the_lan(sent: list[Ether]) -> None:
    allowed = {A("239.255.255.250"), A("255.255.255.255")}
    for pkt in sent:
        if ARP in pkt:
            assert A(pkt[ARP].pdst) in LAN
            continue
        dst = A(pkt[IP].dst)
        assert dst in allowed or dst in LAN, pkt.summary()
        if dst in allowed:
            assert pkt[IP].ttl == 1 and UDP in pkt


def test_every_camera_found_the_right_ways(camera_lab):
    hosts = [(A(s.address), s.mac) for s in SPECS.values()] + [(A(PLAIN[0]), PLAIN[1])]
    pcap = camera_lab["tmp"] / "small.pcap"
    result, probe_mac = _run(camera_lab, hosts, pcap, window=0.6, tries=2)

    found = {str(c.address): c for c in result.cameras}
    assert sorted(found) == ["198.18.95.10", "198.18.95.11", "198.18.95.12"]  # not the plain host
    expected_how = {"198.18.95.10": {"ws-discovery", "rtsp"}, "198.18.95.11": {"sadp", "rtsp"},
                    "198.18.95.12": {"dhip", "rtsp"}}
    for address, how in expected_how.items():
        assert set(found[address].how) == how and len(found[address].how) == len(how)
    onv, hik, dah = (found[s.address] for s in SPECS.values())
    assert [c.mac for c in (onv, hik, dah)] == [s.mac for s in SPECS.values()]
    assert onv.types == ["dn:NetworkVideoTransmitter", "tds:Device"]
    assert onv.xaddrs == ["http://198.18.95.10/onvif/device_service"]
    assert "onvif://www.onvif.org/MAC/02:00:00:00:95:0a" in onv.scopes
    assert (hik.model, hik.serial, dah.model, dah.serial) == ("LAB-IPC-2 (fictional)", "LAB-IPC-2-0002",
                                                              "LAB-NVR-1 (fictional)", "LAB-NVR-1-0003")
    assert [(c.rtsp_status, c.rtsp_server) for c in (onv, hik, dah)] == [
        (200, "LIVE555 Streaming Media v2018.08.28"), (200, "Hikvision-Webs"), (200, "Rtsp Server/3.0")]
    assert result.problems == [] and result.rtsp_checked == 4 and result.probes_sent == 8
    # Both discovery rounds waited their window; the upper bound only catches a hang.
    assert 1.2 <= result.seconds < 15

    captured = rdpcap(str(pcap))
    sent = _sent_by_probe(pcap, probe_mac)
    _assert_stayed_on_the_lan(sent)
    discovery = [p for p in sent if UDP in p and p[IP].ttl == 1]
    assert sorted(p[UDP].dport for p in discovery) == [3702] * 4 + [37020] * 2 + [37810] * 2
    # the ONVIF answer is longer than a frame: it came in IP fragments and was put together
    assert any(IP in p and p[IP].src == "198.18.95.10" and (p[IP].flags.MF or p[IP].frag) for p in captured)
    # the RTSP OPTIONS are in the capture too, though the kernel sent them
    options = {p[IP].dst for p in sent if IP in p and p[IP].proto == 6 and b"OPTIONS rtsp://" in bytes(p[IP].payload)}
    assert options == {"198.18.95.10", "198.18.95.11", "198.18.95.12"}


def test_250_hosts_most_of_them_firewalled(camera_lab):
    hosts = ([(A(s.address), s.mac) for s in SPECS.values()] + [(A(PLAIN[0]), PLAIN[1])]
             + [(A(a), PCS_MAC) for a in PCS])
    assert len(hosts) == 250
    pcap = camera_lab["tmp"] / "big.pcap"
    result, probe_mac = _run(camera_lab, hosts, pcap)  # the defaults: 2 × 2 s, RTSP 1.5 s, 32 at once
    assert sorted(str(c.address) for c in result.cameras) == ["198.18.95.10", "198.18.95.11", "198.18.95.12"]
    assert result.rtsp_checked == 250 and result.problems == []
    # 246 silent hosts hold a slot for the whole timeout each: ceil(246 / 32) waves of 1.5 s at least, so
    # never more than 32 at once. The waves are waits, which a busy machine barely lengthens; twice them
    # is still far below the checks one after another (246 × 1.5 s).
    waves = math.ceil(246 / 32) * 1.5
    assert waves - 0.5 < result.seconds < 2 * waves, result.seconds
    _assert_stayed_on_the_lan(_sent_by_probe(pcap, probe_mac))
