"""The lab's servers, cameras and real-name clients: one daemon serving all of them.

What a café runs besides its PCs, as the lab stages it:

* billing servers of two FICTIONAL products, 实验计费系统甲 LabBill Alpha
  (fictional) and 实验计费系统乙 LabBill Beta (fictional), on their own ports;
* an audit server of the FICTIONAL 实验审计系统 LabAudit (fictional), whose
  service may be stopped (the host still answers ARP; its port is closed);
* the FICTIONAL real-name client 实验实名客户端 LabRealName client (fictional)
  on every terminal that runs it;
* cameras and NVRs, answering with the responders of :mod:`lab.camera_sim`
  (ONVIF WS-Discovery, Hikvision SADP, Dahua DHIP, RTSP OPTIONS).

No public source documents how café billing, audit or real-name products
talk (LEGAL.md "Café software"), so these products are invented here and
their signatures sit in the lab scenarios' venue profiles, as a technician
would stage a venue's own product. The wire formats are below, one per
product: a text banner, a binary request and answer, a text request and
answer, and a binary hello.

One process for all of it, like lab.terminals and for the same reason: it
enters each namespace once, makes the sockets there (a socket stays in the
namespace it was made in) and serves every socket from one selector loop.
The real-name client lives here rather than in the terminals daemon so that
one process sees every connection the probe holds open to the lab at once:
a scanner's cap on concurrent connections is global, so only a single
counter can check it.

TCP servers answer and close: after the answer they shut their side down
and wait (bounded) for the peer to close, so a connection is counted open
from its accept to the peer's close, as long as the scanner holds it. RTSP
stays open for further requests, as a camera's does. ``SIGUSR1`` writes
the connection counts (the most open at once, per listener and over all)
to the stats file named in the spec; ``SIGUSR2`` starts the counts afresh.

Usage: ``python -m lab.services SPEC.json`` (written by lab.build); prints
``ready N`` on stdout once its N sockets are up.
"""

from __future__ import annotations

import heapq
import json
import os
import random
import resource
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from lab.netns import inside

__all__ = ["Product", "PRODUCTS", "REALNAME", "BILLING_PRODUCTS", "AUDIT_PRODUCT", "Reply", "main"]

MAX_REQUEST = 4096  # bytes of a request a server waits for before it gives up on the peer
IDLE_SECONDS = 10.0  # a silent peer, or one that never closes after the answer, is dropped after this
MAX_OPEN = 4096  # connections held at once; more are accepted and closed at once (counted as refused)
WSD_MAX_DELAY = 0.5  # WS-Discovery APP_MAX_DELAY: a target waits up to this before its ProbeMatch


# -- the fictional products ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    """A server's answer to a complete request (``data`` None: refuse it and close)."""

    data: bytes | None
    used: int
    keep_open: bool = False


Responder = Callable[[bytes], "Reply | None"]  # None: the request is not complete yet


@dataclass(frozen=True)
class Product:
    """One of the lab's fictional products: what it is, where it listens, how it talks."""

    key: str  # the product key of profiles (servers.billing/audit) and of its signature
    role: str  # a probe.signatures Role
    name: str
    port: int
    version: str

    def greeting(self, seat: str = "") -> bytes | None:
        """What the server sends as soon as a connection is accepted (None: it waits for a request)."""
        if self.key == "labbill-alpha":
            # Text, server first: a product line with its version, then ready.
            return f"LABBILL-ALPHA/{self.version} READY {self.name}\r\n".encode()
        if self.key == "labrealname":
            return realname_hello(self, seat)
        return None

    def responder(self) -> Responder | None:
        """How the server answers requests (None: it only greets)."""
        return {"labbill-beta": beta_reply, "labaudit": audit_reply}.get(self.key)


BILLING_PRODUCTS = {
    "alpha": Product("labbill-alpha", "billing", "实验计费系统甲 LabBill Alpha (fictional)", 8831, "2.3.1"),
    "beta": Product("labbill-beta", "billing", "实验计费系统乙 LabBill Beta (fictional)", 9317, "4.0.2"),
}
AUDIT_PRODUCT = Product("labaudit", "audit", "实验审计系统 LabAudit (fictional)", 7441, "1.4.0")
REALNAME = Product("labrealname", "realname_client", "实验实名客户端 LabRealName client (fictional)", 6820, "3.0.7")
PRODUCTS = {p.key: p for p in (*BILLING_PRODUCTS.values(), AUDIT_PRODUCT, REALNAME)}

# LabBill Beta: the client sends the 4-byte magic "LBB?", protocol 1, a zero flags byte; the server answers
# "LBB!", protocol 1, the version as three bytes, a 2-byte big-endian length and that much UTF-8 text.
BETA_PROBE = b"LBB?\x01\x00"
# LabAudit: one text line in, one text line out.
AUDIT_PROBE = b"LABAUDIT STATUS\r\n"
# LabRealName: the client greets whoever connects (its console polls it) with a 5-byte magic, the version
# as three bytes, a length byte and "LabRealName/<version> seat=<machine name>" in ASCII.
REALNAME_MAGIC = b"\xa5ZLRN"


def _version_bytes(version: str) -> bytes:
    return bytes(int(part) & 0xFF for part in version.split(".")[:3])


def beta_reply(request: bytes) -> Reply | None:
    """LabBill Beta's answer to its hello; anything else is refused."""
    if len(request) < len(BETA_PROBE):
        return None if BETA_PROBE.startswith(request) else Reply(None, len(request))
    if not request.startswith(BETA_PROBE):
        return Reply(None, len(request))
    product = BILLING_PRODUCTS["beta"]
    text = f"LabBill-Beta/{product.version} {product.name}".encode()
    return Reply(b"LBB!\x01" + _version_bytes(product.version) + struct.pack("!H", len(text)) + text,
                 len(BETA_PROBE))


def audit_reply(request: bytes) -> Reply | None:
    """LabAudit's answer to one command line: its status for STATUS, an error line for anything else."""
    end = request.find(b"\n")
    if end < 0:
        return None if len(request) < 256 else Reply(b"LABAUDIT ERR line too long\r\n", len(request))
    if request[:end + 1].rstrip(b"\r\n") == AUDIT_PROBE.rstrip(b"\r\n"):
        answer = f"LABAUDIT {AUDIT_PRODUCT.version} OK RUNNING {AUDIT_PRODUCT.name}\r\n".encode()
    else:
        answer = b"LABAUDIT ERR unknown command\r\n"
    return Reply(answer, end + 1)


def realname_hello(product: Product, seat: str) -> bytes:
    """The real-name client's hello: magic, version, and the seat it runs on."""
    text = f"LabRealName/{product.version} seat={seat}".encode("ascii", "replace")[:200]
    return REALNAME_MAGIC + _version_bytes(product.version) + bytes([len(text)]) + text


def rtsp_responder(spec: object) -> Responder:
    """A camera's RTSP (``spec``: a lab.camera_sim.CameraSpec): one answer per request (headers end at a
    blank line), the connection kept."""
    from lab import camera_sim

    def reply(request: bytes) -> Reply | None:
        end = request.find(b"\r\n\r\n")
        if end < 0:
            return None
        answer = camera_sim.rtsp_answer(request[:end + 4], spec)
        return Reply(answer, end + 4, keep_open=answer is not None)

    return reply


# -- the daemon -------------------------------------------------------------------------------------

@dataclass
class Listener:
    """One listening TCP socket and the counts the stats file reports."""

    netns: str
    address: str
    port: int
    product: str
    greeting: bytes | None
    responder: Responder | None
    open_now: int = 0
    max_open: int = 0
    accepted: int = 0
    refused: int = 0

    def stats(self) -> dict:
        return {"netns": self.netns, "address": self.address, "port": self.port, "product": self.product,
                "open_now": self.open_now, "max_open": self.max_open, "accepted": self.accepted,
                "refused": self.refused}


@dataclass
class Conn:
    sock: socket.socket
    listener: Listener
    out: bytearray = field(default_factory=bytearray)
    inbuf: bytearray = field(default_factory=bytearray)
    finishing: bool = False  # answered: shut down our side once the answer is out
    shut: bool = False
    closed: bool = False
    last: float = field(default_factory=time.monotonic)


@dataclass
class Datagrams:
    """A camera's UDP discovery socket: which answer function, and whether to answer after a random delay."""

    netns: str
    address: str
    port: int
    how: str
    answer: Callable[[bytes], bytes | None]
    delay: float = 0.0
    received: int = 0
    answered: int = 0

    def stats(self) -> dict:
        return {"netns": self.netns, "address": self.address, "port": self.port, "how": self.how,
                "received": self.received, "answered": self.answered}


class Server:
    """Every socket of the spec, served from one selector loop."""

    def __init__(self, spec: dict) -> None:
        self.sel = selectors.DefaultSelector()
        self.stats_path = Path(spec["stats"])
        self.listeners: list[Listener] = []
        self.datagrams: list[Datagrams] = []
        self.conns: dict[int, Conn] = {}
        self.open_now = self.max_open = 0
        self.seq = 0
        self.rng = random.Random(spec["stats"])
        self.timers: list[tuple[float, int, socket.socket, bytes, tuple]] = []  # delayed UDP answers
        self._dump = self._reset = False
        for s in spec.get("servers", []):
            if s["running"]:
                product = PRODUCTS[s["product"]]
                self._listen(s["netns"], s["address"], product.port, product.key, product.greeting(),
                             product.responder())
        for r in spec.get("realname", []):
            self._listen(r["netns"], r["address"], REALNAME.port, REALNAME.key, REALNAME.greeting(r["seat"]), None)
        for c in spec.get("cameras", []):
            self._camera(c)

    # -- setting up ------------------------------------------------------------------------------
    def _listen(self, netns: str, address: str, port: int, product: str, greeting: bytes | None,
                responder: Responder | None) -> None:
        with inside(netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Any address: a terminal's own is configured by the terminals daemon, maybe not yet.
            sock.bind(("0.0.0.0", port))
            sock.listen(128)
            sock.setblocking(False)
        listener = Listener(netns, address, port, product, greeting, responder)
        self.listeners.append(listener)
        self.sel.register(sock, selectors.EVENT_READ, listener)

    def _camera(self, c: dict) -> None:
        """A camera's sockets: RTSP, and the discovery its vendor and settings answer."""
        # Loaded only for a lab with cameras: lab.build imports this module for the product table alone.
        from lab import camera_sim
        from probe.net.cameras import DHIP_PORT, DISCOVERY_GROUP, RTSP_PORT, SADP_PORT, WSD_PORT

        netns = c.pop("netns")
        spec = camera_sim.CameraSpec(**c)
        group = str(DISCOVERY_GROUP)  # WS-Discovery and SADP share it
        if spec.rtsp:
            self._listen(netns, spec.address, RTSP_PORT, f"rtsp-{spec.kind}", None, rtsp_responder(spec))
        if spec.onvif:
            self._udp(Datagrams(netns, spec.address, WSD_PORT, "ws-discovery",
                                lambda d: camera_sim.ws_discovery_answer(d, spec), WSD_MAX_DELAY), [group])
        if spec.vendor == "hikvision":
            self._udp(Datagrams(netns, spec.address, SADP_PORT, "sadp", lambda d: camera_sim.sadp_answer(d, spec)),
                      [group])
        if spec.vendor == "dahua":
            # Bound to any address, the socket also gets the limited-broadcast search; the group is ConfigTool's.
            self._udp(Datagrams(netns, spec.address, DHIP_PORT, "dhip", lambda d: camera_sim.dhip_answer(d, spec)),
                      [camera_sim.DHIP_GROUP])

    def _udp(self, d: Datagrams, groups: list[str]) -> None:
        with inside(d.netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", d.port))  # unicast, the groups and limited broadcast alike
            for group in groups:
                mreq = socket.inet_aton(group) + socket.inet_aton(d.address)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
        self.datagrams.append(d)
        self.sel.register(sock, selectors.EVENT_READ, d)

    @property
    def socket_count(self) -> int:
        return len(self.listeners) + len(self.datagrams)

    # -- serving -----------------------------------------------------------------------------------
    def run(self) -> None:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        signal.signal(signal.SIGUSR1, self._on_signal)
        signal.signal(signal.SIGUSR2, self._on_signal)
        self.sel.register(wake_r, selectors.EVENT_READ, None)
        next_sweep = time.monotonic() + 1.0
        while True:
            now = time.monotonic()
            timeout = min(next_sweep, self.timers[0][0] if self.timers else next_sweep) - now
            for key, events in self.sel.select(max(0.0, timeout)):
                what = key.data
                if what is None:
                    _drain(wake_r)
                elif isinstance(what, Listener):
                    self._accept(key.fileobj, what)  # type: ignore[arg-type]
                elif isinstance(what, Datagrams):
                    self._datagram(key.fileobj, what)  # type: ignore[arg-type]
                else:
                    self._serve(what, events)
            self._fire_timers()
            if self._reset:
                self._reset = False
                self._restart_counts()
            if self._dump:
                self._dump = False
                self.write_stats()
            if time.monotonic() >= next_sweep:
                self._sweep()
                next_sweep = time.monotonic() + 1.0

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only flags here; the loop does the work between two selects (the wakeup fd ends the wait).
        if signum == signal.SIGUSR1:
            self._dump = True
        else:
            self._reset = True

    def _accept(self, lsock: socket.socket, listener: Listener) -> None:
        while True:
            try:
                sock, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. out of descriptors: the peer sees its connection dropped
            listener.accepted += 1
            if self.open_now >= MAX_OPEN:
                listener.refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            conn = Conn(sock, listener)
            self.conns[sock.fileno()] = conn
            listener.open_now += 1
            listener.max_open = max(listener.max_open, listener.open_now)
            self.open_now += 1
            self.max_open = max(self.max_open, self.open_now)
            self.sel.register(sock, selectors.EVENT_READ, conn)
            if listener.greeting is not None:
                conn.out += listener.greeting
                conn.finishing = listener.responder is None
            self._flush(conn)

    def _serve(self, conn: Conn, events: int) -> None:
        if events & selectors.EVENT_READ:
            try:
                data = conn.sock.recv(MAX_REQUEST)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._close(conn)
                return
            if data == b"":
                self._close(conn)
                return
            if data:
                conn.last = time.monotonic()
                if not (conn.finishing or conn.shut) and conn.listener.responder is not None:
                    conn.inbuf += data
                    if not self._answer(conn):
                        return
        if not conn.closed:
            self._flush(conn)

    def _answer(self, conn: Conn) -> bool:
        """Answer every complete request in the buffer; False when the connection was closed."""
        responder = conn.listener.responder
        assert responder is not None
        while conn.inbuf:
            try:
                reply = responder(bytes(conn.inbuf))
            except Exception as exc:  # noqa: BLE001 - a responder bug must not take every server down
                _log(f"{conn.listener.product} {conn.listener.address}: responder failed: {exc!r}")
                self._close(conn)
                return False
            if reply is None:
                if len(conn.inbuf) >= MAX_REQUEST:
                    self._close(conn)
                    return False
                return True
            if reply.data is None:
                self._close(conn)
                return False
            conn.out += reply.data
            del conn.inbuf[:reply.used]
            if not reply.keep_open:
                conn.finishing = True
                conn.inbuf.clear()
                return True
        return True

    def _flush(self, conn: Conn) -> None:
        if conn.out:
            try:
                sent = conn.sock.send(conn.out)
                del conn.out[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close(conn)
                return
        if not conn.out and conn.finishing and not conn.shut:
            # Answered: our side closes; the connection ends when the peer closes too (or goes idle).
            conn.shut = True
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(conn)
                return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        self.sel.modify(conn.sock, want, conn)

    def _close(self, conn: Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        del self.conns[conn.sock.fileno()]
        self.sel.unregister(conn.sock)
        conn.sock.close()
        conn.listener.open_now -= 1
        self.open_now -= 1

    def _sweep(self) -> None:
        """Drop peers that stayed silent, or never closed after the answer, for IDLE_SECONDS."""
        limit = time.monotonic() - IDLE_SECONDS
        for conn in [c for c in self.conns.values() if c.last < limit]:
            self._close(conn)

    def _datagram(self, sock: socket.socket, d: Datagrams) -> None:
        for _ in range(64):  # a burst is served in turns with the other sockets
            try:
                data, peer = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            d.received += 1
            try:
                answer = d.answer(data)
            except Exception as exc:  # noqa: BLE001 - a responder bug must not take every camera down
                _log(f"{d.how} {d.address}: responder failed: {exc!r}")
                continue
            if answer is None:
                continue
            d.answered += 1
            when = time.monotonic() + (self.rng.uniform(0, d.delay) if d.delay else 0.0)
            heapq.heappush(self.timers, (when, self.rng.getrandbits(32), sock, answer, peer))

    def _fire_timers(self) -> None:
        while self.timers and self.timers[0][0] <= time.monotonic():
            _, _, sock, answer, peer = heapq.heappop(self.timers)
            try:
                sock.sendto(answer, peer)
            except OSError:
                pass  # a lost answer is what a busy camera does too

    # -- counts ------------------------------------------------------------------------------------
    def _restart_counts(self) -> None:
        self.max_open = self.open_now
        for item in self.listeners:
            item.max_open, item.accepted, item.refused = item.open_now, 0, 0
        for d in self.datagrams:
            d.received = d.answered = 0

    def write_stats(self) -> None:
        """Write the counts to the stats file, whole (a temporary file renamed over it)."""
        self.seq += 1
        doc = {"seq": self.seq, "written_at": datetime.now(timezone.utc).isoformat(),
               "open_now": self.open_now, "max_open": self.max_open,
               "accepted": sum(item.accepted for item in self.listeners),
               "listeners": [item.stats() for item in self.listeners],
               "datagrams": [d.stats() for d in self.datagrams]}
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.stats_path)


def _log(line: str) -> None:
    print(line[:500], file=sys.stderr, flush=True)


def _drain(sock: socket.socket) -> None:
    """Empty the signal wakeup socket."""
    try:
        while sock.recv(512):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def main(spec_path: str) -> int:
    """Build every socket of the spec, say ``ready N``, then serve until stopped."""
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    need = len(spec.get("servers", [])) + len(spec.get("realname", [])) + 4 * len(spec.get("cameras", []))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, need + MAX_OPEN + 256)), hard))
    server = Server(spec)
    print(f"ready {server.socket_count}", flush=True)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
