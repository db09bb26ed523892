"""The forwarding test (DUAL-UPLINK): which live hosts of the café LAN route packets to the outside.

A café may have only its registered router(s) as a way out. A PC with a
second line (a 4G dongle, a private fibre) that routes for the others is a
"dual uplink". The test frames a TCP SYN for the external target to each
live host's own MAC, so only a host that routes can pass it on:

1. TTL 1, to every host. A router must drop it and answers ICMP
   time-exceeded (type 11, code 0) quoting our IP header and 8 bytes of TCP,
   from its own LAN address. Nothing of this leaves the LAN.
2. Full TTL (64), once, only to the hosts still silent after step 1 (and
   only when ``syn`` is on). A router that never sends ICMP (a firewall rule
   on its output) still forwards it; the target's SYN-ACK or RST comes back
   through it. **These SYNs are the only probe packets that leave the café**,
   and only through a host that forwards. The probe's own kernel answers a
   returning SYN-ACK with a RST (it has no socket for it), which is what any
   half-open probe does and closes the target's half-open state at once.
3. TTL 2 … 1 + ``follow_hops``, to each forwarder found (only when
   ``follow_hops`` > 0): who answers time-exceeded one, two … hops past it
   tells which line it leads onto (its egress). A forwarder is followed no
   further once the target itself answers.

Every answer maps back to one question: each host gets its own TCP source
port (a random per-run base plus its index, inside the ephemeral range
32768–60999) and IP id, each followed hop its own port too, and the TCP
sequence number says which try of which step was answered (for the RTT).

Frames get lost on café switches, so every question is asked again while it
stays unanswered, ``retries`` more times at most, paced at ``rate`` frames
per second for the whole test. Each host runs through its steps on its own
schedule, interleaved with the others', so the silent majority's retries
fill the time the routers' rate limit makes us wait.

Why TTL-limited questions are asked again only a second apart: Linux limits
the ICMP errors it sends to one destination (``net.ipv4.icmp_ratelimit``,
1000 ms, in a token bucket that holds 6 tokens, for all ICMP error types
together). A router's bucket for the probe's address may already be spent
(the probe's own UDP probes of closed ports cost the same tokens, so may
anyone's traceroute from that address). A retry inside the same second could
then be eaten as well, and a lossy switch plus the limit would hide the
router. With at least ``ICMP_RATELIMIT`` between two questions to one host,
a token has always grown back by the time the next one arrives: only the
first question can ever be eaten by the limit, every retry faces only the
wire's loss. The full-TTL SYNs draw no ICMP, so they are re-asked after one
reply window.

Parsers slice frames by hand with bounds on everything (one 802.1Q tag is
understood, as in :func:`probe.net.arp.parse_arp`) and return None for
anything else; frames of other kinds (ICMP unreachable, fragments, TCP
without SYN-ACK or RST) are not answers here.
"""

from __future__ import annotations

import heapq
import secrets
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Literal

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from probe.net.link import Frame, RawLink, mac_str
from probe.observations import Forwarder, ForwardingHop, ForwardingTest

__all__ = ["probe_forwarding", "build_syn", "parse_time_exceeded", "parse_tcp_answer", "TimeExceeded",
           "TcpAnswer", "ForwardingProgress", "ICMP_RATELIMIT"]

ETH_IPV4 = b"\x08\x00"
ETH_VLAN = b"\x81\x00"
MIN_FRAME = 60  # Ethernet minimum without FCS; veth would not pad for us
PORT_FIRST, PORT_LAST = 32768, 60999  # Linux's default ephemeral range: what a real client would use
PORT_SPAN = PORT_LAST - PORT_FIRST + 1
FULL_TTL = 64
ICMP_RATELIMIT = 1.05  # Linux icmp_ratelimit (1 s) plus a margin for jiffies and scheduling
WINDOW_FLOOR, WINDOW_CEILING = 0.3, 1.0
TCP_SYN, TCP_RST, TCP_ACK = 0x02, 0x04, 0x10
# The TCP sequence number of a question: isn + step * STEP_SEQ + try, so an answer names its try.
STEP_SEQ = 256
Step = Literal["ttl1", "syn", "follow", "done"]
_STEP_CODE = {"ttl1": 0, "syn": 1, "follow": 2}

ForwardingProgress = Callable[[int, int, int], None]
"""progress(hosts_finished, hosts_total, forwarders_found)"""


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TimeExceeded:
    """An ICMP time-exceeded (in transit) and the IPv4/TCP-or-UDP header it quotes."""

    eth_src: bytes
    src: int  # who sent the ICMP
    dst: int
    inner_src: int
    inner_dst: int
    inner_proto: int
    inner_id: int
    sport: int  # first 8 quoted bytes of the transport header: ports and (TCP) sequence
    dport: int
    seq: int


@dataclass(frozen=True, slots=True)
class TcpAnswer:
    """A TCP segment with SYN+ACK or RST set: an answer to a SYN."""

    eth_src: bytes
    src: int
    dst: int
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int


def _ipv4_at(data: bytes, proto: int) -> tuple[int, int, int] | None:
    """(IP offset, payload offset, end) of the unfragmented IPv4 ``proto`` datagram a frame carries; else None."""
    off = 14
    ethertype = data[12:14]
    if ethertype == ETH_VLAN:
        ethertype, off = data[16:18], 18
    if ethertype != ETH_IPV4 or len(data) < off + 20 or data[off] >> 4 != 4:
        return None
    ihl = (data[off] & 0x0F) * 4
    total = struct.unpack_from("!H", data, off + 2)[0]
    flags_frag = struct.unpack_from("!H", data, off + 6)[0]
    end = off + total  # frames may carry padding past the datagram
    if ihl < 20 or total < ihl or end > len(data) or flags_frag & 0x1FFF or data[off + 9] != proto:
        return None
    return off, off + ihl, end


def parse_time_exceeded(data: bytes) -> TimeExceeded | None:
    """An Ethernet frame carrying ICMP time-exceeded in transit (11/0) that quotes ≥ 8 bytes; else None."""
    if (at := _ipv4_at(data, 1)) is None:
        return None
    off, icmp, end = at
    if end < icmp + 8 + 20 + 8 or data[icmp] != 11 or data[icmp + 1] != 0:
        return None
    inner = icmp + 8
    inner_ihl = (data[inner] & 0x0F) * 4
    if data[inner] >> 4 != 4 or inner_ihl < 20 or end < inner + inner_ihl + 8:
        return None
    sport, dport, seq = struct.unpack_from("!HHI", data, inner + inner_ihl)
    return TimeExceeded(
        eth_src=data[6:12],
        src=int.from_bytes(data[off + 12:off + 16], "big"),
        dst=int.from_bytes(data[off + 16:off + 20], "big"),
        inner_src=int.from_bytes(data[inner + 12:inner + 16], "big"),
        inner_dst=int.from_bytes(data[inner + 16:inner + 20], "big"),
        inner_proto=data[inner + 9],
        inner_id=struct.unpack_from("!H", data, inner + 4)[0],
        sport=sport, dport=dport, seq=seq)


def parse_tcp_answer(data: bytes) -> TcpAnswer | None:
    """An Ethernet frame carrying a TCP SYN-ACK or RST; None for anything else."""
    if (at := _ipv4_at(data, 6)) is None:
        return None
    off, tcp, end = at
    if end < tcp + 20:
        return None
    doff = (data[tcp + 12] >> 4) * 4
    flags = data[tcp + 13]
    if doff < 20 or tcp + doff > end:
        return None
    if not (flags & TCP_RST or flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK):
        return None
    sport, dport, seq, ack = struct.unpack_from("!HHII", data, tcp)
    return TcpAnswer(eth_src=data[6:12], src=int.from_bytes(data[off + 12:off + 16], "big"),
                     dst=int.from_bytes(data[off + 16:off + 20], "big"),
                     sport=sport, dport=dport, seq=seq, ack=ack, flags=flags)


def build_syn(src_mac: bytes, dst_mac: bytes, src: IPv4Address, dst: IPv4Address, *, ttl: int, ip_id: int,
              sport: int, dport: int, seq: int) -> bytes:
    """An Ethernet/IPv4/TCP SYN framed to ``dst_mac``, as a client's first SYN looks (MSS option)."""
    frame = (Ether(src=mac_str(src_mac), dst=mac_str(dst_mac))
             / IP(src=str(src), dst=str(dst), ttl=ttl, id=ip_id)
             / TCP(sport=sport, dport=dport, seq=seq, flags="S", window=64240, options=[("MSS", 1460)]))
    return bytes(frame).ljust(MIN_FRAME, b"\0")


# ---------------------------------------------------------------------------
# Answers, filled by the link's receiver thread
# ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Heard:
    source: int
    time: float
    seq: int | None  # the sequence number of the question answered, when the answer names it


class _Answers:
    """Time-exceeded and TCP answers for our questions, first one per source port kept."""

    def __init__(self, probe_ip: int, target: int, port: int, ports: set[int], isn: int) -> None:
        self.probe_ip, self.target, self.port, self.ports, self.isn = probe_ip, target, port, ports, isn
        self.icmp: dict[int, _Heard] = {}
        self.tcp: dict[int, _Heard] = {}

    def on_frame(self, frame: Frame) -> None:
        if frame.outgoing:
            return
        te = parse_time_exceeded(frame.data)
        if te is not None:
            if (te.dst == self.probe_ip and te.inner_dst == self.target and te.inner_proto == 6
                    and te.dport == self.port and te.sport in self.ports):
                self.icmp.setdefault(te.sport, _Heard(te.src, frame.time, te.seq))
            return
        tcp = parse_tcp_answer(frame.data)
        if (tcp is None or tcp.src != self.target or tcp.sport != self.port or tcp.dst != self.probe_ip
                or tcp.dport not in self.ports):
            return
        seq = None
        if tcp.flags & TCP_ACK:
            seq = (tcp.ack - 1) & 0xFFFFFFFF
            if (seq - self.isn) & 0xFFFFFFFF >= len(_STEP_CODE) * STEP_SEQ:
                return  # acknowledges no SYN of this run: a stale or forged answer
        self.tcp.setdefault(tcp.dport, _Heard(tcp.src, frame.time, seq))


# ---------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------

@dataclass
class _Host:
    """One live host and where it is in its own sequence of questions."""

    index: int
    address: IPv4Address
    mac: bytes
    sport: int
    step: Step = "ttl1"
    tries: list[float] = field(default_factory=list)  # send times of this step's questions
    ttl: int = 2  # while following: the TTL being asked
    followed: bool = False
    path: list[ForwardingHop] = field(default_factory=list)


@dataclass
class _Counts:
    ttl1: int = 0
    syn: int = 0
    follow: int = 0


class _Test:
    """The state of one forwarding test; :func:`probe_forwarding` drives it."""

    def __init__(self, link: RawLink, hosts: list[tuple[IPv4Address, bytes]], probe_ip: IPv4Address,
                 target: IPv4Address, port: int, syn: bool, follow_hops: int, rate: float, retries: int) -> None:
        self.link, self.probe_ip, self.target, self.port = link, probe_ip, target, port
        self.syn, self.follow_hops, self.interval, self.retries = syn, follow_hops, 1.0 / rate, retries
        self.isn = secrets.randbits(32)
        self._port0 = secrets.randbelow(PORT_SPAN)
        self._id0 = secrets.randbits(16)
        self.hosts = [_Host(i, a, m, self.sport(i)) for i, (a, m) in enumerate(hosts)]
        ports = {self.sport(slot) for slot in range(len(hosts) * (1 + follow_hops))}
        self.answers = _Answers(int(probe_ip), int(target), port, ports, self.isn)
        self.sent_at: dict[tuple[int, int], float] = {}  # (sport, seq) -> send time
        self.rtts: dict[str, list[float]] = {"ttl1": [], "syn": [], "follow": []}
        self.counts = _Counts()
        self.finished = 0

    # -- numbering -----------------------------------------------------------
    def sport(self, slot: int) -> int:
        """Source port of question slot ``slot``: host i is slot i, its followed hops come after all hosts."""
        return PORT_FIRST + (self._port0 + slot) % PORT_SPAN

    def follow_sport(self, h: _Host) -> int:
        return self.sport(len(self.hosts) + h.index * self.follow_hops + h.ttl - 2)

    def window(self, step: Step) -> float:
        """How long an answer to this step's questions may take: a few times the slowest seen, within bounds.

        Kept per step: a hop past a forwarder (or an ARP on its far side) may
        be slow, and that must not slow down the LAN's own questions.
        """
        seen = self.rtts.get(step) or [0.0]
        return min(WINDOW_CEILING, max(WINDOW_FLOOR, 4 * max(seen)))

    def found(self, h: _Host) -> bool:
        return h.sport in self.answers.icmp or h.sport in self.answers.tcp

    # -- one host's next move ----------------------------------------------------
    def step(self, h: _Host, now: float) -> tuple[tuple[int, int, int] | None, float | None]:
        """What ``h`` does now: ((ttl, sport, seq) to send, None) or (None, when to look again) or (None, None)."""
        while True:
            if h.step in ("ttl1", "syn"):
                if self.found(h):
                    heard = self.answers.icmp.get(h.sport)
                    self._note_rtt("ttl1" if heard else "syn", h.sport, heard or self.answers.tcp[h.sport])
                    if not self._start_following(h):
                        return None, None
                    continue
                ttl = 1 if h.step == "ttl1" else FULL_TTL
                move = self._ask_or_wait(h, now, ttl, h.sport, ttl == 1)
                if move is not None:
                    return move
                if h.step == "ttl1" and self.syn:
                    h.step, h.tries = "syn", []
                    continue
                return self._done(h)
            if h.step == "follow":
                key = self.follow_sport(h)
                if (heard := self.answers.tcp.get(key)) is not None:
                    self._note_rtt("follow", key, heard)
                    return self._done(h)  # the target itself answered: nothing further to learn
                if (heard := self.answers.icmp.get(key)) is not None:
                    self._note_rtt("follow", key, heard)
                    h.path.append(ForwardingHop(ttl=h.ttl, address=IPv4Address(heard.source)))
                else:
                    move = self._ask_or_wait(h, now, h.ttl, key, True)
                    if move is not None:
                        return move
                    h.path.append(ForwardingHop(ttl=h.ttl, address=None))
                h.ttl += 1
                h.tries = []
                if h.ttl > 1 + self.follow_hops:
                    return self._done(h)
                continue
            return None, None

    def _ask_or_wait(self, h: _Host, now: float, ttl: int, sport: int, draws_icmp: bool
                     ) -> tuple[tuple[int, int, int] | None, float | None] | None:
        """Ask (again) if it is time, wait if not; None once the step's tries are spent and waited out."""
        window = self.window(h.step)
        if len(h.tries) <= self.retries:
            gap = max(window, ICMP_RATELIMIT) if draws_icmp else window
            if h.tries and now < h.tries[-1] + gap:
                return None, h.tries[-1] + gap
            seq = (self.isn + _STEP_CODE[h.step] * STEP_SEQ + len(h.tries)) & 0xFFFFFFFF
            return (ttl, sport, seq), None
        if now < h.tries[-1] + window:
            return None, h.tries[-1] + window
        return None

    def _start_following(self, h: _Host) -> bool:
        if self.follow_hops <= 0 or h.followed:
            self._done(h)
            return False
        h.step, h.tries, h.ttl, h.followed = "follow", [], 2, True
        return True

    def _done(self, h: _Host) -> tuple[None, None]:
        if h.step != "done":
            h.step = "done"
            self.finished += 1
        return None, None

    def _note_rtt(self, step: str, sport: int, heard: _Heard) -> None:
        sent = self.sent_at.get((sport, heard.seq)) if heard.seq is not None else None
        if sent is not None:
            self.rtts[step].append(max(0.0, heard.time - sent))

    def send(self, h: _Host, ttl: int, sport: int, seq: int, frame: bytes) -> float:
        """Send one built question now and book it."""
        now = self.link.now()  # before sending: an answer may be in before send() returns
        self.link.send(frame)
        h.tries.append(now)
        self.sent_at[(sport, seq)] = now
        if h.step == "ttl1":
            self.counts.ttl1 += 1
        elif h.step == "syn":
            self.counts.syn += 1
        else:
            self.counts.follow += 1
        return now

    def frame(self, h: _Host, ttl: int, sport: int, seq: int) -> bytes:
        slot = (sport - PORT_FIRST - self._port0) % PORT_SPAN
        return build_syn(self.link.mac, h.mac, self.probe_ip, self.target, ttl=ttl,
                         ip_id=(self._id0 + slot) & 0xFFFF, sport=sport, dport=self.port, seq=seq)

    def revive(self) -> list[_Host]:
        """Forwarders whose answer came after their own questions ended: follow them too."""
        late = [h for h in self.hosts if h.step == "done" and not h.followed and self.follow_hops > 0
                and self.found(h)]
        for h in late:
            self.finished -= 1
            self._start_following(h)
        return late

    # -- result ------------------------------------------------------------------
    def forwarders(self) -> list[Forwarder]:
        out = []
        for h in self.hosts:
            heard = self.answers.icmp.get(h.sport)
            how: Literal["ttl_exceeded", "tcp_answer"] = "ttl_exceeded"
            if heard is None:
                heard, how = self.answers.tcp.get(h.sport), "tcp_answer"
            if heard is None:
                continue
            out.append(Forwarder(address=h.address, mac=mac_str(h.mac), how=how,
                                 answered_from=IPv4Address(heard.source),
                                 rtt_ms=round(1000 * self._rtt(h.sport, heard), 3), path=h.path))
        return out

    def _rtt(self, sport: int, heard: _Heard) -> float:
        sent = self.sent_at.get((sport, heard.seq)) if heard.seq is not None else None
        if sent is None:  # the answer does not name its try: count from the last one before it
            sent = max((t for (p, _), t in self.sent_at.items() if p == sport and t <= heard.time), default=heard.time)
        return max(0.0, heard.time - sent)


def _hosts_to_test(link: RawLink, hosts: Sequence[tuple[IPv4Address, str]], probe_ip: IPv4Address
                   ) -> list[tuple[IPv4Address, bytes]]:
    out = []
    for address, mac in hosts:
        raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
        if len(raw) != 6:
            raise ValueError(f"not a MAC address: {mac!r}")
        if IPv4Address(address) != probe_ip and raw != link.mac:
            out.append((IPv4Address(address), raw))
    return out


def _sleep_until(link: RawLink, when: float) -> None:
    delay = when - link.now()
    if delay > 0.0002:
        time.sleep(delay)


def probe_forwarding(link: RawLink, hosts: list[tuple[IPv4Address, str]], probe_ip: IPv4Address,
                     target: IPv4Address, *, port: int = 80, syn: bool = True, follow_hops: int = 0,
                     rate: float = 500.0, retries: int = 2, progress: ForwardingProgress | None = None,
                     ) -> ForwardingTest:
    """Find the hosts among ``hosts`` (the sweep's address, MAC pairs) that forward to ``target``.

    Sends, framed to each host's MAC and from ``probe_ip``: a TTL-1 TCP SYN
    for ``target``:``port``; then, if ``syn``, one full-TTL SYN to each host
    still silent (the only packets that may leave the LAN, through a host
    that forwards); then, if ``follow_hops`` > 0, TTL 2 … 1 + ``follow_hops``
    through each forwarder. ``rate`` caps frames per second; each unanswered
    question is asked ``retries`` more times at most, TTL-limited ones no
    sooner than ``ICMP_RATELIMIT`` after the last (see the module's text).
    ``progress(hosts_finished, hosts_total, forwarders_found)`` is called now
    and then. The probe itself is skipped.
    """
    if rate <= 0 or retries < 0 or follow_hops < 0 or not 1 <= port <= 65535 or retries >= STEP_SEQ:
        raise ValueError("need rate > 0, 0 ≤ retries < 256, follow_hops ≥ 0 and 1 ≤ port ≤ 65535")
    probe_ip, target = IPv4Address(probe_ip), IPv4Address(target)
    tested = _hosts_to_test(link, hosts, probe_ip)
    if len(tested) * (1 + follow_hops) > PORT_SPAN:
        raise ValueError(f"{len(tested)} hosts × {1 + follow_hops} questions need more source ports "
                         f"than {PORT_FIRST}–{PORT_LAST} has")
    test = _Test(link, tested, probe_ip, target, port, syn, follow_hops, rate, retries)
    start = time.monotonic()
    unsubscribe = link.subscribe(test.answers.on_frame)
    try:
        _drive(test, progress)
    finally:
        unsubscribe()
    c = test.counts
    return ForwardingTest(target=target, port=port, hosts=len(tested), ttl1_sent=c.ttl1, syn_enabled=syn,
                          syn_sent=c.syn, follow_hops=follow_hops, follow_sent=c.follow,
                          forwarders=test.forwarders(), seconds=round(time.monotonic() - start, 4))


def _drive(test: _Test, progress: ForwardingProgress | None) -> None:
    """Run every host's questions, paced for the whole test, each host due on its own schedule."""
    link = test.link
    now = link.now()
    due: list[tuple[float, int]] = [(now, h.index) for h in test.hosts]
    next_slot = now
    sent = 0
    while due or (due := sorted((link.now(), h.index) for h in test.revive())):
        when, index = heapq.heappop(due)
        _sleep_until(link, when)
        h = test.hosts[index]
        ask, again = test.step(h, link.now())
        if ask is not None:
            frame = test.frame(h, *ask)
            _sleep_until(link, next_slot)
            sent_time = test.send(h, *ask, frame)
            next_slot = max(next_slot, sent_time) + test.interval
            again = sent_time + test.window(h.step)  # look for the answer then, or ask again later
            sent += 1
        if again is not None:
            heapq.heappush(due, (again, index))
        elif progress:
            progress(test.finished, len(test.hosts), sum(1 for x in test.hosts if test.found(x)))
        if progress and ask is not None and sent % 64 == 0:
            progress(test.finished, len(test.hosts), sum(1 for x in test.hosts if test.found(x)))
