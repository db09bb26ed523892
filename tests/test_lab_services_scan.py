"""The service scan against real listeners in namespaces of its own, counted at the listeners.

Topology (every name carries a fresh lab id; all torn down after the module, also on failure)::

    client 198.18.90.1 (eth0) ─── veth ─── (eth0) 198.18.90.2 server

The server namespace runs one listener process (this module, run as
``python -m tests.test_lab_services_scan SPEC``) that owns every port:
banner-first ports, ports that answer only the probe, silent ports, one that
drips a byte every 50 ms, one that floods 64 KiB; UDP ports that answer or
stay mute. An nftables rule drops one port (filtered) and one port has no
listener (closed). The listener counts the connections open at once (it
handles every readable connection before it accepts another, and accepts one
per listening socket per round, so its count is exact) and notes each accept
time and each connection's life; SIGUSR1 makes it write them to a file.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from lab import netns as ns
from probe.net.services import BANNER_WAIT, MAX_BANNER, QUIET, scan
from probe.signatures import Signature
from tests.conftest import ROOT, new_lab_id

pytestmark = pytest.mark.lab

CLIENT, SERVER = IPv4Address("198.18.90.1"), IPv4Address("198.18.90.2")
SERVER_MAC = "02:90:00:00:00:02"
BANNER = list(range(20001, 20017))  # speak first
PROBE = list(range(20017, 20031))  # answer the probe only
SILENT = list(range(20031, 20039))  # accept and never speak
DRIP, FLOOD = 20039, 20040
FILTERED, CLOSED = 20050, 20051
UDP_PONG, UDP_MUTE = 20060, 20061
LISTENING = BANNER + PROBE + SILENT + [DRIP, FLOOD]
PROBE_TEXT = b"HELLO-PROBE\r\n"
DRIP_INTERVAL = 0.05
FLOOD_BYTES = 65536
CAP, RATE = 8, 100.0
# The read deadline is far from the quiet gap (QUIET, 0.2 s) so that which of them ended a read shows in a
# connection's life however busy the machine is.
CONNECT_TIMEOUT, READ_TIMEOUT, READ_BYTES = 0.5, 3.0, 1024
# What a busy machine may add to a life measured at the listener (its loop's and the scanner's wake-ups).
# The failures the lives catch take far longer: a drip read to READ_BYTES (50 s), a read without deadline
# (forever), a banner read held to the deadline (READ_TIMEOUT).
SLACK = 2.0

SIGNATURES = [
    Signature(id="lab-banner", name="实验横幅 / lab banner (fictional)", role="billing", ports=BANNER,
              match=r"^TESTBANNER \d+ ", confidence=0.9, confirmed=True, source="this test"),
    # 20001 speaks first, so its probe goes over a fresh connection; SILENT[0] says nothing, so the same one.
    Signature(id="lab-probe", name="实验探测 / lab probe (fictional)", role="audit", ports=PROBE + [20001, SILENT[0]],
              probe=PROBE_TEXT.decode(), match=r"PONG \d+", confidence=0.8, confirmed=True, source="this test"),
    Signature(id="lab-open", name="实验端口 / lab open port (fictional)", role="diskless",
              ports=SILENT + [DRIP, FLOOD, FILTERED, CLOSED], confidence=0.2, confirmed=False, source="this test"),
    Signature(id="lab-udp", name="实验 UDP / lab UDP (fictional)", role="nvr", transport="udp",
              ports=[UDP_PONG, UDP_MUTE], probe="UDPPING", match=r"^UDPPONG", confidence=0.7, confirmed=True,
              source="this test"),
]
ORIGIN = {"lab-banner": "profile", "lab-probe": "rules", "lab-open": "rules", "lab-udp": "profile"}


# ---------------------------------------------------------------------------
# The listener (runs in the server namespace)
# ---------------------------------------------------------------------------

@dataclass
class _Conn:
    sock: socket.socket
    port: int
    kind: str
    opened: float
    inbuf: bytes = b""


@dataclass
class _Listener:
    stats_path: Path
    sel: selectors.DefaultSelector = field(default_factory=selectors.DefaultSelector)
    open_now: int = 0
    max_open: int = 0
    accepts: list[tuple[float, int]] = field(default_factory=list)
    lives: list[tuple[int, str, float]] = field(default_factory=list)
    dump: bool = False

    def listen(self, kinds: dict[int, str], udp: dict[int, str]) -> None:
        for port, kind in kinds.items():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(128)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ, ("listen", port, kind))
        for port, kind in udp.items():
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("0.0.0.0", port))
            u.setblocking(False)
            self.sel.register(u, selectors.EVENT_READ, ("udp", port, kind))

    def accept(self, lsock: socket.socket, port: int, kind: str) -> None:
        try:
            sock, _ = lsock.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        now = time.monotonic()
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        self.accepts.append((now, port))
        conn = _Conn(sock, port, kind, now)
        self.sel.register(sock, selectors.EVENT_READ, ("conn", conn))
        if kind == "banner":
            self.send(conn, b"TESTBANNER %d \x00\xff\\\r\n" % port)
        elif kind == "flood":
            self.send(conn, b"F" * FLOOD_BYTES)

    def send(self, conn: _Conn, data: bytes) -> None:
        try:
            conn.sock.send(data)  # what the socket buffer takes; the rest is dropped, as a flood would be
        except BlockingIOError:
            pass
        except OSError:
            self.close(conn)

    def close(self, conn: _Conn) -> None:
        if conn.sock.fileno() < 0:
            return
        self.sel.unregister(conn.sock)
        conn.sock.close()
        self.open_now -= 1
        self.lives.append((conn.port, conn.kind, time.monotonic() - conn.opened))

    def readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close(conn)
            return
        conn.inbuf = (conn.inbuf + data)[-256:]
        if conn.kind in ("banner", "probe") and PROBE_TEXT in conn.inbuf:
            conn.inbuf = b""
            self.send(conn, b"PONG %d\r\n" % conn.port)

    def datagram(self, usock: socket.socket, port: int, kind: str) -> None:
        try:
            data, peer = usock.recvfrom(2048)
        except BlockingIOError:
            return
        if kind == "pong" and data == b"UDPPING":
            usock.sendto(b"UDPPONG %d" % port, peer)

    def write_stats(self) -> None:
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"max_open": self.max_open, "open_now": self.open_now,
                                   "accepts": self.accepts, "lives": self.lives}))
        tmp.replace(self.stats_path)

    def run(self) -> None:
        next_drip = time.monotonic()
        while True:
            events = self.sel.select(timeout=0.01)
            # Connections first: an EOF that arrived before a new SYN is seen before that connection is accepted.
            events.sort(key=lambda e: e[0].data[0] != "conn")
            for key, _ in events:
                what = key.data
                if what[0] == "conn":
                    self.readable(what[1])
                elif what[0] == "listen":
                    self.accept(key.fileobj, what[1], what[2])
                else:
                    self.datagram(key.fileobj, what[1], what[2])
            if time.monotonic() >= next_drip:
                next_drip += DRIP_INTERVAL
                for key in list(self.sel.get_map().values()):
                    if key.data[0] == "conn" and key.data[1].kind == "drip":
                        self.send(key.data[1], b".")
            if self.dump:
                self.dump = False
                self.write_stats()


def serve(spec_path: str) -> None:
    """The listener process: bind everything of the spec, say ready, serve until SIGTERM."""
    spec = json.loads(Path(spec_path).read_text())
    listener = _Listener(Path(spec["stats"]))
    listener.listen({int(p): k for p, k in spec["tcp"].items()}, {int(p): k for p, k in spec["udp"].items()})

    def on_usr1(signum: int, frame: object) -> None:
        listener.dump = True

    signal.signal(signal.SIGUSR1, on_usr1)
    Path(spec["ready"]).write_text("ready\n")
    listener.run()


# ---------------------------------------------------------------------------
# The namespaces and the scan
# ---------------------------------------------------------------------------

@dataclass
class Lab:
    lab_id: str
    workdir: Path
    namespaces: list[str] = field(default_factory=list)
    records: list[ns.ProcRecord] = field(default_factory=list)

    def name(self, role: str) -> str:
        return f"{self.lab_id}-{role}"


def _build(lab: Lab) -> None:
    client, server = lab.name("c"), lab.name("s")
    lab.namespaces.extend([client, server])  # recorded before they exist, so teardown finds a half-built lab
    ns.add_ipv4_namespaces((client, server))
    # Made inside the client namespace, the peer put straight into the server's: nothing touches the root one.
    ns.ip_batch([f"link add eth0 type veth peer name eth0 address {SERVER_MAC} netns {server}",
                 "link set lo up", "link set eth0 up", f"addr add {CLIENT}/24 dev eth0"], netns=client)
    ns.ip_batch(["link set lo up", "link set eth0 up", f"addr add {SERVER}/24 dev eth0"], netns=server)
    ns.run_in(server, ["nft", "-f", "-"],
              stdin=("table inet lab_filter {\n chain input {\n  type filter hook input priority 0;\n"
                     f"  tcp dport {FILTERED} drop\n }}\n}}\n"))


def _start_listener(lab: Lab) -> ns.ProcRecord:
    kinds = {**{p: "banner" for p in BANNER}, **{p: "probe" for p in PROBE}, **{p: "silent" for p in SILENT},
             DRIP: "drip", FLOOD: "flood"}
    spec = {"tcp": kinds, "udp": {UDP_PONG: "pong", UDP_MUTE: "mute"},
            "stats": str(lab.workdir / "stats.json"), "ready": str(lab.workdir / "ready")}
    spec_path = lab.workdir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc, rec = ns.spawn(lab.name("s"), [sys.executable, "-m", "tests.test_lab_services_scan", str(spec_path)],
                         "listener", lab.workdir / "listener.log", cwd=str(ROOT))
    lab.records.append(rec)
    deadline = time.monotonic() + 30  # only catches a hang
    while not (lab.workdir / "ready").exists():
        assert proc.poll() is None, (lab.workdir / "listener.log").read_text()
        assert time.monotonic() < deadline, "listener did not start"
        time.sleep(0.02)
    return rec


def _stats(lab: Lab, rec: ns.ProcRecord) -> dict:
    stats = lab.workdir / "stats.json"
    stats.unlink(missing_ok=True)
    os.kill(rec.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 30  # only catches a hang
    while not stats.exists():
        assert time.monotonic() < deadline, "listener wrote no statistics"
        time.sleep(0.02)
    return json.loads(stats.read_text())


def _teardown(lab: Lab) -> None:
    for rec in lab.records:
        ns.stop(rec)
    names = [n for n in lab.namespaces if ns.netns_exists(n)]
    ns.ip_batch((f"netns del {n}" for n in names), force=True)
    left = [n for n in names if ns.netns_exists(n)]
    assert not left, f"namespaces left behind: {left}"


@dataclass
class Outcome:
    scan: object
    stats: dict
    wall: float


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    lab = Lab(new_lab_id("sv"), tmp_path_factory.mktemp("services-lab"))
    try:
        _build(lab)
        rec = _start_listener(lab)
        start = time.monotonic()
        with ns.inside(lab.name("c")):  # sockets stay in the namespace they were made in
            result = scan([(SERVER, SERVER_MAC)], SIGNATURES, origin=ORIGIN, max_concurrent=CAP, connect_rate=RATE,
                          connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT, read_bytes=READ_BYTES,
                          retries=1)
        wall = time.monotonic() - start
        # The listener sees the last closes a moment later; the deadline only catches a hang.
        deadline = time.monotonic() + 30
        while (stats := _stats(lab, rec))["open_now"] and time.monotonic() < deadline:
            time.sleep(0.05)
        yield Outcome(result, stats, wall)
    finally:
        _teardown(lab)


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

def test_never_more_connections_open_at_once_than_the_cap(outcome):
    stats, result = outcome.stats, outcome.scan
    # > 1 proves the listener can see concurrency at all, so the cap test could fail.
    assert 1 < stats["max_open"] <= CAP, stats["max_open"]
    assert stats["max_open"] <= result.peak_concurrent <= CAP
    assert result.max_concurrent == CAP and stats["open_now"] == 0


def test_connect_rate_is_honoured_at_the_listener(outcome):
    times = sorted(t for t, _ in outcome.stats["accepts"])
    window = 0.05
    most = max(sum(1 for u in times if t <= u < t + window) for t in times)
    # A bucket of one allows RATE × window starts in a window, one more at its edge, one of jitter.
    assert most <= RATE * window + 2, most
    assert times[-1] - times[0] >= 0.9 * (len(times) - 1) / RATE
    assert outcome.scan.seconds >= (outcome.scan.connections - 1) / RATE


def test_every_port_classified(outcome):
    (host,) = outcome.scan.hosts
    assert (host.address, host.mac) == (SERVER, SERVER_MAC)
    assert sorted(o.port for o in host.open if o.transport == "tcp") == LISTENING
    assert host.closed == [CLOSED] and host.filtered == [FILTERED]
    assert [o.port for o in host.open if o.transport == "udp"] == [UDP_PONG]
    assert outcome.scan.tcp_ports == sorted(LISTENING + [FILTERED, CLOSED])
    assert outcome.scan.udp_ports == [UDP_PONG, UDP_MUTE]
    # One connect per port, one more for 20001's probe (it spoke first), two tries for the filtered port.
    assert outcome.scan.connections == len(LISTENING) + 2 + 1 + 1
    accepts = Counter(p for _, p in outcome.stats["accepts"])
    assert accepts == Counter({**{p: 1 for p in LISTENING}, 20001: 2})


def test_banners_are_bounded_and_escaped(outcome):
    (host,) = outcome.scan.hosts
    ports = {o.port: o for o in host.open if o.transport == "tcp"}
    for port in BANNER:
        assert ports[port].banner.startswith(f"TESTBANNER {port} \\x00\\xff\\x5c\\x0d\\x0a"), ports[port]
        assert not ports[port].probed
    flood = ports[FLOOD]
    assert flood.banner_bytes == READ_BYTES and len(flood.banner) == MAX_BANNER
    drip = ports[DRIP]
    # Cut by the read deadline: what drips in until then, far below READ_BYTES, where a read without a
    # deadline would stop.
    assert 1 <= drip.banner_bytes <= (READ_TIMEOUT + SLACK) / DRIP_INTERVAL < READ_BYTES
    assert set(drip.banner) == {"."}
    for port in PROBE:
        assert ports[port].probed and ports[port].banner == f"PONG {port}\\x0d\\x0a"
    assert ports[SILENT[0]].probed and ports[SILENT[0]].banner is None
    assert all(ports[p].banner is None and not ports[p].probed for p in SILENT[1:])
    assert all(0 < o.rtt_ms < CONNECT_TIMEOUT * 1000 for o in ports.values())


def test_slow_and_silent_servers_held_no_longer_than_the_read_deadline(outcome):
    lives = outcome.stats["lives"]
    drip = [life for port, _, life in lives if port == DRIP]
    # Held at least to the deadline (the drip never left a quiet gap), and ended by it.
    assert len(drip) == 1 and READ_TIMEOUT - 0.05 <= drip[0] <= READ_TIMEOUT + SLACK, drip
    # The longest any connection may live: listen before the probe, then one read of the answer.
    longest = BANNER_WAIT + READ_TIMEOUT + SLACK
    assert max(life for _, _, life in lives) <= longest, sorted(lives, key=lambda x: -x[2])[:3]
    quick = [life for port, _, life in lives if port in BANNER[1:]]
    assert QUIET + SLACK < READ_TIMEOUT
    assert max(quick) <= QUIET + SLACK  # a banner ends the read after a quiet gap, not at the deadline


def test_probes_answered_and_signatures_matched_with_their_origin(outcome):
    by_sig: dict[str, set[int]] = {}
    for m in outcome.scan.matches:
        by_sig.setdefault(m.signature, set()).add(m.port)
        assert m.origin == ORIGIN[m.signature] and (m.address, m.mac) == (SERVER, SERVER_MAC)
    assert by_sig == {"lab-banner": set(BANNER), "lab-probe": set(PROBE) | {20001},
                      "lab-open": set(SILENT) | {DRIP, FLOOD}, "lab-udp": {UDP_PONG}}
    udp = next(m for m in outcome.scan.matches if m.signature == "lab-udp")
    assert (udp.transport, udp.role, udp.confirmed) == ("udp", "nvr", True)
    assert outcome.scan.signatures == sorted(ORIGIN)


if __name__ == "__main__":
    serve(sys.argv[1])
