"""The service scan: which live hosts listen on the signature ports, what they say, and which signatures fit.

TCP: one connect to every (host, port) of the union of the TCP signatures'
ports, through the kernel's own sockets (asyncio). A reset is *closed*; no
answer within ``connect_timeout`` (or an ICMP unreachable) is *filtered* and
asked again up to ``retries`` times, since café switches lose frames. On a
connected socket the scan first listens: banner-first servers (MySQL, SSH,
FTP) speak at once. When nothing came, the first signature of that port that
has a probe payload sends it on the same connection; every other probe of
the port gets a fresh connection of its own, so each probe meets a server in
its initial state (the choice that keeps every answer attributable). A read
ends at ``read_bytes``, at the peer's close, after ``QUIET`` seconds without
more once something came, and in any case at one deadline per read (not per
chunk), so a server that drips a byte at a time cannot hold the scan.

UDP: for each port of the UDP signatures, one socket sends each distinct
payload to every host, waits ``read_timeout`` for the answers and asks the
silent hosts again, ``retries`` times. Only a datagram from the probed port
of a probed host counts as an answer; UDP ports that stay silent are not
reported (a silent UDP port tells nothing).

Two caps hold for the whole scan, TCP and UDP together: at most
``max_concurrent`` sockets open at once (a semaphore around every socket,
with an honest count of the peak), and at most ``connect_rate`` new
connections or datagrams per second, spaced evenly (a bucket of one: no
bursts, not even after the event loop stalled). The process's descriptor
limit is raised to fit the cap; when it cannot be, the cap is lowered and
the lower value is what :attr:`ServiceScan.max_concurrent` records.

The defaults (256 sockets, 1,000 new connections a second, 0.5 s to
connect) are set for a switched LAN, where an answer takes milliseconds and
café PCs' firewalls drop most ports: a filtered port costs its timeout, twice,
so the timeout and the cap set the scan's length, and 1,000 SYNs a second
match the ARP sweep's pace.

Answers are hostile bytes: they are never parsed, only searched with each
signature's regular expression over a bounded copy decoded as Latin-1
(:meth:`probe.signatures.Signature.matches`), and kept in the observation as
at most ``MAX_BANNER`` bytes escaped by :func:`escape_banner`.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Literal, TypeVar

from probe.observations import OpenPort, ServiceHost, ServiceScan, SignatureMatch
from probe.signatures import MAX_ANSWER, Signature, signatures_sha256

__all__ = ["ServiceScanError", "Origin", "ScanProgress", "scan_async", "scan", "escape_banner", "match_answer",
           "MAX_BANNER", "BANNER_WAIT", "QUIET"]

Origin = Literal["rules", "profile"]
ScanProgress = Callable[[int, int, int], None]
"""progress(targets_finished, targets_total, open_ports_found); a target is one (host, TCP port) or one UDP port"""

MAX_BANNER = 256  # bytes of an answer kept in the observation; escaped, at most 4 characters each
BANNER_WAIT = 0.25  # the passive listen before a probe: a banner-first server speaks within one LAN round trip
QUIET = 0.2  # once data came, this long without more ends a read: one answer is one burst on a LAN
MAX_RETRIES = 10
FD_SPARE = 32  # descriptors kept free beyond the cap (event loop, capture file, logs)
# Errors of our own machine, not of the network: a scan that met them would report lies, so it stops.
_LOCAL_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL})
# Printable ASCII stays, except the backslash, so that every escaped banner reads back to one byte string.
_ESCAPED = tuple(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in range(256))

State = Literal["open", "closed", "filtered"]
T = TypeVar("T")


class ServiceScanError(Exception):
    """The scan cannot run as asked (bad arguments, signatures without an origin, no descriptors left)."""


def escape_banner(data: bytes | bytearray | memoryview, limit: int = MAX_BANNER) -> str:
    """The first ``limit`` bytes of an answer as text: printable ASCII as is, every other byte (and ``\\``) as \\xNN."""
    try:
        raw = bytes(data[:max(0, int(limit))])
    except (TypeError, ValueError, OverflowError):
        return ""
    return "".join(_ESCAPED[b] for b in raw)


def match_answer(address: IPv4Address, mac: str, port: int, signature: Signature, answer: bytes | None,
                 origin: Mapping[str, Origin], transport: Literal["tcp", "udp"] = "tcp") -> SignatureMatch | None:
    """The match of ``signature`` on this host's port, given what the port answered (None: nothing), if it fits.

    A signature for another port or transport never fits. The answer is only
    searched (bounded, Latin-1), never parsed. ServiceScanError when the
    signature has no origin.
    """
    where = origin.get(signature.id)
    if where not in ("rules", "profile"):
        raise ServiceScanError(f"签名 {signature.id} 没有来源 / signature {signature.id} has no origin "
                               "(rules or profile)")
    if signature.transport != transport or port not in signature.ports:
        return None
    bounded = bytes(answer[:MAX_ANSWER]) if answer else None
    if not signature.matches(bounded):
        return None
    return SignatureMatch(address=address, mac=mac, port=port, transport=transport, signature=signature.id,
                          role=signature.role, product=signature.product, confidence=signature.confidence,
                          confirmed=signature.confirmed, origin=where)


# ---------------------------------------------------------------------------
# The two caps
# ---------------------------------------------------------------------------

class _Pacer:
    """At most ``rate`` starts per second, each at least 1/rate after the one before (a bucket of one)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.last = float("-inf")
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        # The spacing is measured from the previous *release*, under a FIFO lock: a stalled loop
        # cannot release a backlog of slots at once.
        async with self.lock:
            loop = asyncio.get_running_loop()
            delay = self.last + self.interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.last = loop.time()


@dataclass
class _Sockets:
    """Every socket of the scan is made here: the cap on sockets open at once, and the count of them."""

    cap: int
    sem: asyncio.Semaphore = field(init=False)
    open: int = 0
    peak: int = 0

    def __post_init__(self) -> None:
        self.sem = asyncio.Semaphore(self.cap)

    @asynccontextmanager
    async def new(self, kind: int, pacer: _Pacer | None = None) -> AsyncIterator[socket.socket]:
        """A non-blocking IPv4 socket for the block, made once a slot (and, if given, a pace slot) is free."""
        async with self.sem:
            if pacer is not None:
                await pacer.wait()
            try:
                sock = socket.socket(socket.AF_INET, kind)
            except OSError as exc:
                raise ServiceScanError(f"无法创建套接字 / cannot make a socket: {exc}") from None
            self.open += 1
            self.peak = max(self.peak, self.open)
            try:
                sock.setblocking(False)
                yield sock
            finally:
                sock.close()
                self.open -= 1


def _fit_descriptor_limit(cap: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to fit ``cap`` sockets; the cap that fits if it cannot be raised."""
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 64
    need = cap + in_use + FD_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return cap
    target = need if hard == resource.RLIM_INFINITY else min(hard, need)
    with suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return max(1, min(cap, soft - in_use - FD_SPARE))


# ---------------------------------------------------------------------------
# Reading and talking
# ---------------------------------------------------------------------------

async def _read(sock: socket.socket, limit: int, timeout: float) -> bytes:
    """Up to ``limit`` bytes: until then, the peer's close, QUIET after the last data, or ``timeout`` in all."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    buf = bytearray()
    while len(buf) < limit:
        wait = deadline - loop.time()
        if buf:
            wait = min(wait, QUIET)
        if wait <= 0:
            break
        try:
            async with asyncio.timeout(wait):
                chunk = await loop.sock_recv(sock, limit - len(buf))
        except (TimeoutError, OSError):
            break
        if not chunk:
            break
        buf += chunk
    return bytes(buf[:limit])


async def _send(sock: socket.socket, payload: bytes, timeout: float) -> bool:
    """Send a probe payload; False when the peer is gone or will not take it in time."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_sendall(sock, payload)
    except (TimeoutError, OSError):
        return False
    return True


@dataclass
class _TcpResult:
    state: State
    rtt_ms: float = 0.0
    banner: bytes = b""
    answers: dict[str, bytes | None] = field(default_factory=dict)  # probe signature id -> its answer
    probes_sent: int = 0


@dataclass
class _UdpAnswer:
    data: bytes
    rtt_ms: float


# ---------------------------------------------------------------------------
# The scan
# ---------------------------------------------------------------------------

@dataclass
class _Scan:
    hosts: list[tuple[IPv4Address, str]]
    signatures: list[Signature]
    origin: Mapping[str, Origin]
    connect_timeout: float
    read_timeout: float
    read_bytes: int
    retries: int
    sockets: _Sockets
    pacer: _Pacer
    progress: ScanProgress | None
    connections: int = 0
    datagrams: int = 0
    finished: int = 0
    total: int = 0
    tcp: dict[tuple[IPv4Address, int], _TcpResult] = field(default_factory=dict)
    udp: dict[tuple[IPv4Address, int, str], _UdpAnswer] = field(default_factory=dict)  # (host, port, sig id)

    def ports(self, transport: str) -> list[int]:
        return sorted({p for s in self.signatures if s.transport == transport for p in s.ports})

    def on_port(self, port: int, transport: str) -> list[Signature]:
        return [s for s in self.signatures if s.transport == transport and port in s.ports]

    def tick(self) -> None:
        self.finished += 1
        if self.progress and (self.finished % 16 == 0 or self.finished == self.total):
            open_ports = sum(1 for r in self.tcp.values() if r.state == "open")
            self.progress(self.finished, self.total, open_ports + len({k[:2] for k in self.udp}))

    # -- TCP -------------------------------------------------------------
    async def connect(self, address: IPv4Address, port: int,
                      talk: Callable[[socket.socket], Awaitable[T]]) -> tuple[State, float, T | None]:
        """Connect (asking again while filtered), then ``talk`` on the connected socket."""
        loop = asyncio.get_running_loop()
        for _ in range(self.retries + 1):
            async with self.sockets.new(socket.SOCK_STREAM, self.pacer) as sock:
                self.connections += 1
                start = loop.time()
                try:
                    async with asyncio.timeout(self.connect_timeout):
                        await loop.sock_connect(sock, (str(address), port))
                except ConnectionRefusedError:
                    return "closed", 0.0, None
                except TimeoutError:
                    continue
                except OSError as exc:
                    if exc.errno in _LOCAL_ERRORS:
                        raise ServiceScanError(f"本机网络资源不足 / local network resources exhausted: {exc}") from None
                    continue  # unreachable (ARP failed, ICMP admin-prohibited): no answer, like a drop
                rtt = (loop.time() - start) * 1000.0
                return "open", rtt, await talk(sock)
        return "filtered", 0.0, None

    async def tcp_target(self, address: IPv4Address, port: int) -> None:
        """One host's port: connect, listen, probe, and keep what came back."""
        probes = [s for s in self.on_port(port, "tcp") if s.payload is not None]
        wait = min(BANNER_WAIT, self.read_timeout) if probes else self.read_timeout
        result = _TcpResult(state="filtered")

        async def first(sock: socket.socket) -> None:
            result.banner = await _read(sock, self.read_bytes, wait)
            if not result.banner and probes:
                result.answers[probes[0].id] = await self.probe(sock, probes[0])
                result.probes_sent += 1

        state, rtt, _ = await self.connect(address, port, first)
        result.state, result.rtt_ms = state, rtt
        if state == "open":
            for sig in probes:
                if sig.id in result.answers:
                    continue
                result.probes_sent += 1
                _, _, answer = await self.connect(address, port, lambda sock, s=sig: self.probe(sock, s))
                result.answers[sig.id] = answer
        self.tcp[(address, port)] = result
        self.tick()

    async def probe(self, sock: socket.socket, sig: Signature) -> bytes | None:
        """Send ``sig``'s payload and read the answer; None when it could not be sent."""
        assert sig.payload is not None
        if not await _send(sock, sig.payload, self.read_timeout):
            return None
        return await _read(sock, self.read_bytes, self.read_timeout)

    async def tcp_all(self) -> None:
        # Port-major order: consecutive connections go to different hosts, none is hammered.
        targets = iter([(a, p) for p in self.ports("tcp") for a, _ in self.hosts])

        async def worker() -> None:
            for address, port in targets:
                await self.tcp_target(address, port)

        await asyncio.gather(*(worker() for _ in range(self.sockets.cap)))

    # -- UDP -------------------------------------------------------------
    async def udp_port(self, port: int) -> None:
        """Every distinct payload of this port's UDP signatures, to every host, over one socket."""
        by_payload: dict[bytes, list[Signature]] = {}
        for sig in self.on_port(port, "udp"):
            by_payload.setdefault(sig.payload or b"", []).append(sig)
        async with self.sockets.new(socket.SOCK_DGRAM) as sock:
            sock.bind(("0.0.0.0", 0))
            for payload, sigs in by_payload.items():
                answers = await self.udp_round(sock, port, payload)
                for address, answer in answers.items():
                    for sig in sigs:
                        self.udp[(address, port, sig.id)] = answer
        self.tick()

    async def udp_round(self, sock: socket.socket, port: int, payload: bytes) -> dict[IPv4Address, _UdpAnswer]:
        loop = asyncio.get_running_loop()
        wanted = {str(a): a for a, _ in self.hosts}
        answers: dict[IPv4Address, _UdpAnswer] = {}
        sent_at: dict[IPv4Address, float] = {}
        all_in = asyncio.Event()

        async def receive() -> None:
            while True:
                try:
                    data, (src, sport) = await loop.sock_recvfrom(sock, self.read_bytes)
                except OSError:
                    continue  # an ICMP error queued on the socket: not an answer
                address = wanted.get(src)
                if address is None or sport != port or address in answers or address not in sent_at:
                    continue
                answers[address] = _UdpAnswer(bytes(data), (loop.time() - sent_at[address]) * 1000.0)
                if len(answers) == len(wanted):
                    all_in.set()

        receiver = asyncio.create_task(receive())
        try:
            for _ in range(self.retries + 1):
                silent = [a for a in wanted.values() if a not in answers]
                if not silent:
                    break
                for address in silent:
                    await self.pacer.wait()
                    sent_at[address] = loop.time()
                    self.datagrams += 1
                    with suppress(OSError):
                        await loop.sock_sendto(sock, payload, (str(address), port))
                with suppress(TimeoutError):
                    async with asyncio.timeout(self.read_timeout):
                        await all_in.wait()
        finally:
            receiver.cancel()
            with suppress(asyncio.CancelledError):
                await receiver
        return answers

    # -- results ---------------------------------------------------------
    def host_results(self) -> tuple[list[ServiceHost], list[SignatureMatch]]:
        hosts: list[ServiceHost] = []
        matches: list[SignatureMatch] = []
        for address, mac in self.hosts:
            host = ServiceHost(address=address, mac=mac)
            for port in self.ports("tcp"):
                result = self.tcp.get((address, port))
                if result is None:
                    continue
                if result.state == "closed":
                    host.closed.append(port)
                elif result.state == "filtered":
                    host.filtered.append(port)
                else:
                    host.open.append(_open_port(port, "tcp", result))
                    matches.extend(self.tcp_matches(address, mac, port, result))
            for port in self.ports("udp"):
                for sig in self.on_port(port, "udp"):
                    answer = self.udp.get((address, port, sig.id))
                    if answer is None:
                        continue
                    if not any(o.port == port and o.transport == "udp" for o in host.open):
                        host.open.append(OpenPort(port=port, transport="udp", banner=escape_banner(answer.data),
                                                  banner_bytes=len(answer.data), probed=True,
                                                  rtt_ms=round(answer.rtt_ms, 3)))
                    found = match_answer(address, mac, port, sig, answer.data, self.origin, "udp")
                    if found is not None:
                        matches.append(found)
            hosts.append(host)
        return hosts, matches

    def tcp_matches(self, address: IPv4Address, mac: str, port: int, result: _TcpResult) -> list[SignatureMatch]:
        """Each signature of the port against its own answer: its probe's, or the unasked banner."""
        out = []
        for sig in self.on_port(port, "tcp"):
            answer = result.answers.get(sig.id) if sig.payload is not None else (result.banner or None)
            found = match_answer(address, mac, port, sig, answer, self.origin, "tcp")
            if found is not None:
                out.append(found)
        return out


def _open_port(port: int, transport: Literal["tcp", "udp"], result: _TcpResult) -> OpenPort:
    """The observation of an open port: the unasked banner if any, else the first probe's answer."""
    probe_answers = [a for a in result.answers.values() if a]
    if result.banner:
        shown, probed = result.banner, False
    elif probe_answers:
        shown, probed = probe_answers[0], True
    else:
        shown, probed = b"", result.probes_sent > 0
    return OpenPort(port=port, transport=transport, banner=escape_banner(shown) if shown else None,
                    banner_bytes=len(shown), probed=probed, rtt_ms=round(result.rtt_ms, 3))


def _check_arguments(signatures: Sequence[Signature], origin: Mapping[str, Origin], max_concurrent: int,
                     connect_rate: float, connect_timeout: float, read_timeout: float, read_bytes: int,
                     retries: int) -> None:
    problems = []
    if max_concurrent < 1:
        problems.append("max_concurrent ≥ 1")
    if not connect_rate > 0:
        problems.append("connect_rate > 0")
    if not (connect_timeout > 0 and read_timeout > 0):
        problems.append("connect_timeout > 0 and read_timeout > 0")
    if not 1 <= read_bytes <= MAX_ANSWER:
        problems.append(f"1 ≤ read_bytes ≤ {MAX_ANSWER}")
    if not 0 <= retries <= MAX_RETRIES:
        problems.append(f"0 ≤ retries ≤ {MAX_RETRIES}")
    missing = sorted(s.id for s in signatures if origin.get(s.id) not in ("rules", "profile"))
    if missing:
        problems.append("every signature needs an origin (rules or profile): " + ", ".join(missing))
    if problems:
        raise ServiceScanError("服务扫描参数无效 / invalid service scan arguments: " + "; ".join(problems))


async def scan_async(hosts: list[tuple[IPv4Address, str]], signatures: list[Signature], *,
                     origin: dict[str, Origin], max_concurrent: int = 256, connect_rate: float = 1000.0,
                     connect_timeout: float = 0.5, read_timeout: float = 1.0, read_bytes: int = MAX_ANSWER,
                     retries: int = 1, progress: ScanProgress | None = None) -> ServiceScan:
    """Scan the live ``hosts`` ((address, MAC) pairs) on every port of ``signatures``; see the module's text.

    ``origin`` maps every signature id to "rules" or "profile" (where the
    signature came from; it goes into each match). ``max_concurrent`` caps
    the sockets open at once (lowered if the descriptor limit cannot be
    raised to fit it), ``connect_rate`` the new connections and datagrams
    per second. A TCP connect waits ``connect_timeout``; each read waits
    ``read_timeout`` in all and keeps at most ``read_bytes``; unanswered
    connects and datagrams are retried ``retries`` times.
    ``progress(targets_finished, targets_total, open_ports_found)`` is called
    now and then. ServiceScanError for arguments that cannot work.
    """
    _check_arguments(signatures, origin, max_concurrent, connect_rate, connect_timeout, read_timeout, read_bytes,
                     retries)
    started = time.monotonic()
    unique = list({IPv4Address(a): (IPv4Address(a), m) for a, m in hosts}.values())
    cap = _fit_descriptor_limit(max_concurrent)
    run = _Scan(hosts=unique, signatures=list(signatures), origin=origin, connect_timeout=connect_timeout,
                read_timeout=read_timeout, read_bytes=read_bytes, retries=retries, sockets=_Sockets(cap),
                pacer=_Pacer(connect_rate), progress=progress)
    tcp_ports, udp_ports = run.ports("tcp"), run.ports("udp")
    run.total = len(unique) * len(tcp_ports) + (len(udp_ports) if unique else 0)
    if unique:
        await asyncio.gather(run.tcp_all(), *(run.udp_port(p) for p in udp_ports))
    found_hosts, matches = run.host_results()
    return ServiceScan(
        tcp_ports=tcp_ports, udp_ports=udp_ports, hosts=found_hosts,
        matches=sorted(matches, key=lambda m: (m.address, m.transport, m.port, m.signature)),
        signatures=sorted(s.id for s in signatures), signatures_sha256=signatures_sha256(list(signatures)),
        max_concurrent=cap, connect_rate=connect_rate, peak_concurrent=run.sockets.peak,
        connections=run.connections, seconds=round(time.monotonic() - started, 4))


def scan(hosts: list[tuple[IPv4Address, str]], signatures: list[Signature], *, origin: dict[str, Origin],
         max_concurrent: int = 256, connect_rate: float = 1000.0, connect_timeout: float = 0.5,
         read_timeout: float = 1.0, read_bytes: int = MAX_ANSWER, retries: int = 1,
         progress: ScanProgress | None = None) -> ServiceScan:
    """:func:`scan_async` on a fresh event loop (the caller must not be inside one)."""
    return asyncio.run(scan_async(hosts, signatures, origin=origin, max_concurrent=max_concurrent,
                                  connect_rate=connect_rate, connect_timeout=connect_timeout,
                                  read_timeout=read_timeout, read_bytes=read_bytes, retries=retries,
                                  progress=progress))
