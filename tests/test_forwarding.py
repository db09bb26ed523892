"""The forwarding test without a network: its frames, its parsers (fuzzed), and its schedule on a LAN in memory."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, TCP, IPerror, TCPerror
from scapy.layers.l2 import Dot1Q, Ether

from probe.net import forwarding
from probe.net.forwarding import (_Answers, build_syn, parse_tcp_answer, parse_time_exceeded,
                                  probe_forwarding)
from probe.net.link import Frame, mac_str

PROBE_MAC = bytes.fromhex("021e06000001")
PROBE_IP = IPv4Address("198.18.70.250")
TARGET = IPv4Address("203.0.113.80")
ISN = 0x10203040


def _mac(n: int) -> bytes:
    return bytes([2, 0x70, 0, 0, 0, n])


def _syn(ttl: int = 1, sport: int = 40000, seq: int = ISN, dst_mac: bytes = _mac(1)) -> bytes:
    return build_syn(PROBE_MAC, dst_mac, PROBE_IP, TARGET, ttl=ttl, ip_id=777, sport=sport, dport=80, seq=seq)


def _time_exceeded(question: bytes, src: str = "198.18.70.1", quote: int | None = None, code: int = 0,
                   icmp_type: int = 11, dst: str = str(PROBE_IP)) -> bytes:
    """What a router sends back for ``question``: its IP header and ``quote`` bytes past it (all by default)."""
    inner = bytes(Ether(question)[IP])
    inner = inner[:20 + quote] if quote is not None else inner
    return bytes(Ether(src=mac_str(_mac(1)), dst=mac_str(PROBE_MAC)) / IP(src=src, dst=dst)
                 / ICMP(type=icmp_type, code=code) / inner)


def _answer(flags: str, dport: int = 40000, ack: int = ISN + 1, src: str = str(TARGET), sport: int = 80) -> bytes:
    return bytes(Ether(src=mac_str(_mac(2)), dst=mac_str(PROBE_MAC)) / IP(src=src, dst=str(PROBE_IP))
                 / TCP(sport=sport, dport=dport, flags=flags, seq=99, ack=ack))


# -- frames ---------------------------------------------------------------------

def test_syn_is_framed_to_the_host_with_our_addresses_and_valid_checksums():
    frame = _syn(ttl=1, sport=41234, seq=ISN)
    assert len(frame) == 60  # padded to the Ethernet minimum
    pkt = Ether(frame)
    assert (pkt.src, pkt.dst) == (mac_str(PROBE_MAC), mac_str(_mac(1)))
    assert (pkt[IP].src, pkt[IP].dst, pkt[IP].ttl, pkt[IP].id) == (str(PROBE_IP), str(TARGET), 1, 777)
    assert (pkt[TCP].sport, pkt[TCP].dport, pkt[TCP].seq, pkt[TCP].flags) == (41234, 80, ISN, "S")
    rebuilt = pkt.copy()
    del rebuilt[IP].chksum, rebuilt[TCP].chksum
    again = Ether(bytes(rebuilt))
    assert again[IP].chksum == pkt[IP].chksum and again[TCP].chksum == pkt[TCP].chksum


# -- parsers --------------------------------------------------------------------

def test_time_exceeded_plain_tagged_and_with_only_eight_bytes_quoted():
    question = _syn(sport=41234)
    full = _time_exceeded(question)
    tagged = bytes(Ether(src=mac_str(_mac(1)), dst=mac_str(PROBE_MAC)) / Dot1Q(vlan=7) / Ether(full)[IP])
    for frame in (full, tagged, _time_exceeded(question, quote=8)):
        te = parse_time_exceeded(frame)
        assert te is not None
        assert (IPv4Address(te.src), IPv4Address(te.dst)) == (IPv4Address("198.18.70.1"), PROBE_IP)
        assert (IPv4Address(te.inner_src), IPv4Address(te.inner_dst)) == (PROBE_IP, TARGET)
        assert (te.inner_proto, te.inner_id, te.sport, te.dport, te.seq) == (6, 777, 41234, 80, ISN)
        assert te.eth_src == _mac(1)


def test_not_a_time_exceeded_in_transit():
    question = _syn()
    assert parse_time_exceeded(_time_exceeded(question, code=1)) is None        # reassembly timeout
    assert parse_time_exceeded(_time_exceeded(question, icmp_type=3)) is None   # unreachable
    assert parse_time_exceeded(_time_exceeded(question, quote=7)) is None       # RFC 792 wants 8 bytes
    assert parse_time_exceeded(question) is None
    assert parse_time_exceeded(_answer("RA")) is None
    later_fragment = Ether(_time_exceeded(question))
    later_fragment[IP].frag = 10
    assert parse_time_exceeded(bytes(later_fragment)) is None
    cut = _time_exceeded(question)
    assert parse_time_exceeded(cut[:-30]) is None  # IP total length beyond the frame
    assert parse_time_exceeded(b"") is None


def test_scapy_quoted_layers_agree_with_the_slicer():
    te_frame = _time_exceeded(_syn(sport=50001, seq=ISN + 2))
    pkt = Ether(te_frame)
    te = parse_time_exceeded(te_frame)
    assert te is not None and te.sport == pkt[TCPerror].sport and te.seq == pkt[TCPerror].seq
    assert IPv4Address(te.inner_dst) == IPv4Address(pkt[IPerror].dst)


def test_tcp_answers_are_syn_ack_or_reset_only():
    for flags in ("SA", "RA", "R"):
        ans = parse_tcp_answer(_answer(flags, dport=45000, ack=ISN + 1))
        assert ans is not None and ans.dport == 45000 and ans.sport == 80
        assert IPv4Address(ans.src) == TARGET and IPv4Address(ans.dst) == PROBE_IP
    for flags in ("S", "A", "PA", "F"):
        assert parse_tcp_answer(_answer(flags)) is None
    bad_offset = bytearray(_answer("SA"))
    bad_offset[14 + 20 + 12] = 0x40  # data offset 16 bytes: shorter than a TCP header
    assert parse_tcp_answer(bytes(bad_offset)) is None
    assert parse_tcp_answer(_time_exceeded(_syn())) is None


@settings(max_examples=800, deadline=None)
@given(st.binary(max_size=160))
def test_parsers_never_raise_on_garbage(data):
    # Behind an IPv4 (or tagged IPv4) ethertype the bytes reach the IP and ICMP/TCP slicing too.
    for head in (b"", bytes(12) + b"\x08\x00", bytes(12) + b"\x81\x00\x00\x07\x08\x00"):
        te = parse_time_exceeded(head + data)
        assert te is None or 0 <= te.sport <= 65535
        ans = parse_tcp_answer(head + data)
        assert ans is None or ans.flags & 0x16


GOOD = [_time_exceeded(_syn()), _time_exceeded(_syn(), quote=8), _answer("SA"), _answer("RA"),
        bytes(Ether(src=mac_str(_mac(1))) / Dot1Q(vlan=7) / Ether(_time_exceeded(_syn()))[IP])]


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(GOOD), st.integers(0, 120), st.lists(st.tuples(st.integers(0, 119), st.integers(0, 255)),
                                                           max_size=6))
def test_parsers_never_raise_on_mutated_answers(good, cut, flips):
    frame = bytearray(good[:cut] if cut < len(good) else good)
    for pos, value in flips:
        if pos < len(frame):
            frame[pos] = value
    te = parse_time_exceeded(bytes(frame))
    assert te is None or isinstance(te.sport, int)
    ans = parse_tcp_answer(bytes(frame))
    assert ans is None or 0 <= ans.dport <= 65535
    answers = _Answers(int(PROBE_IP), int(TARGET), 80, {40000}, ISN)
    answers.on_frame(Frame(bytes(frame), 0.5, False))


# -- matching answers to questions ------------------------------------------------

def test_answers_are_matched_on_quoted_destination_protocol_and_port():
    answers = _Answers(int(PROBE_IP), int(TARGET), 80, {40000, 40001}, ISN)
    answers.on_frame(Frame(_time_exceeded(_syn(sport=40000)), 0.25, False))
    answers.on_frame(Frame(_time_exceeded(_syn(sport=40000), src="198.18.70.9"), 0.3, False))  # first one kept
    answers.on_frame(Frame(_time_exceeded(_syn(sport=40002)), 0.3, False))  # not one of our ports
    answers.on_frame(Frame(_time_exceeded(_syn(sport=40001), dst="198.18.70.77"), 0.3, False))  # not to us
    answers.on_frame(Frame(_time_exceeded(_syn(sport=40001)), 0.3, True))  # our own frame looped back
    assert set(answers.icmp) == {40000}
    assert answers.icmp[40000].source == int(IPv4Address("198.18.70.1")) and answers.icmp[40000].seq == ISN

    answers.on_frame(Frame(_answer("RA", dport=40001, ack=ISN + 5000), 0.4, False))  # acks no SYN of ours
    answers.on_frame(Frame(_answer("RA", dport=40001, src="203.0.113.81"), 0.4, False))  # not the target
    answers.on_frame(Frame(_answer("RA", dport=40001, sport=443), 0.4, False))  # not the port asked
    assert answers.tcp == {}
    answers.on_frame(Frame(_answer("SA", dport=40001, ack=ISN + 256 + 2 + 1), 0.5, False))  # acks seq + 1
    assert answers.tcp[40001].seq == ISN + 256 + 2


# -- the schedule, on a LAN in memory ----------------------------------------------

@dataclass
class Node:
    """A LAN host as the fake network plays it."""

    address: str
    kind: str  # "router": answers TTL 1; "silent": forwards, never sends ICMP; "host": drops
    path: list[str | None] = field(default_factory=list)  # hops past it (None: a silent hop); target after
    tokens: float = 6.0  # its ICMP budget for the probe, as Linux keeps it


class FakeLink:
    """A RawLink stand-in: frames sent are answered at once by the nodes, with loss and ICMP rate limits."""

    TOKEN_SECONDS = 0.1  # one ICMP error per 0.1 s (Linux: per second; tests shrink time tenfold)

    def __init__(self, nodes: dict[bytes, Node], loss: float = 0.0, seed: int = 1) -> None:
        self.mac = PROBE_MAC
        self.nodes = nodes
        self.loss = loss
        self.rng = random.Random(seed)
        self.started = time.monotonic()
        self.handlers: list = []
        self.sent: list[tuple[float, bytes]] = []
        self._refilled: dict[str, float] = {}
        self.hop_tokens: dict[str, float] = {}

    def now(self) -> float:
        return time.monotonic() - self.started

    def subscribe(self, handler):
        self.handlers.append(handler)
        return lambda: self.handlers.remove(handler)

    def send(self, frame: bytes) -> None:
        now = self.now()
        self.sent.append((now, frame))
        for handler in list(self.handlers):
            handler(Frame(frame, now, True))
        node = self.nodes.get(frame[:6])
        if node is None or self.rng.random() < self.loss:
            return
        reply = self._reply(node, Ether(frame), now)
        if reply is not None and self.rng.random() >= self.loss:
            for handler in list(self.handlers):
                handler(Frame(reply, now + 0.001, False))

    def _reply(self, node: Node, pkt: Ether, now: float) -> bytes | None:
        ttl = pkt[IP].ttl
        if node.kind == "host":
            return None
        if ttl == 1:
            return _time_exceeded(bytes(pkt), src=node.address) if node.kind == "router" and self._allow(
                node.address, now, node) else None
        hop = ttl - 1  # hops past the node this packet can still make
        if hop <= len(node.path):
            sender = node.path[hop - 1]
            return _time_exceeded(bytes(pkt), src=sender) if sender and self._allow(sender, now) else None
        return _answer("RA", dport=pkt[TCP].sport, ack=pkt[TCP].seq + 1)

    def _allow(self, who: str, now: float, node: Node | None = None) -> bool:
        """Linux's inet_peer_xrlim_allow: a bucket of at most 6 tokens, one per TOKEN_SECONDS, one per error."""
        tokens = node.tokens if node else self.hop_tokens.get(who, 6.0)
        tokens = min(6.0, tokens + (now - self._refilled.get(who, now)) / self.TOKEN_SECONDS)
        self._refilled[who] = now
        allowed = tokens >= 1.0
        tokens -= 1.0 if allowed else 0.0
        if node:
            node.tokens = tokens
        else:
            self.hop_tokens[who] = tokens
        return allowed

    def frames_to(self, mac: bytes, ttl: int | None = None) -> list[Ether]:
        pkts = [Ether(f) for _, f in self.sent if f[:6] == mac]
        return [p for p in pkts if ttl is None or p[IP].ttl == ttl]


@pytest.fixture(autouse=True)
def fast_clock(monkeypatch):
    """Ten times faster than the real thing; FakeLink's ICMP budget grows ten times faster too."""
    monkeypatch.setattr(forwarding, "ICMP_RATELIMIT", 0.105)
    monkeypatch.setattr(forwarding, "WINDOW_FLOOR", 0.03)
    monkeypatch.setattr(forwarding, "WINDOW_CEILING", 0.1)


def _cafe() -> dict[bytes, Node]:
    nodes = {_mac(1): Node("198.18.70.1", "router", ["203.0.113.1", "203.0.113.254"]),
             _mac(2): Node("198.18.70.2", "silent", ["198.51.100.1", None, "198.51.100.254"]),
             _mac(3): Node("198.18.70.3", "host")}
    nodes.update({_mac(n): Node(f"198.18.70.{n}", "host") for n in range(4, 20)})
    return nodes


def _hosts(nodes: dict[bytes, Node]) -> list[tuple[IPv4Address, str]]:
    return [(IPv4Address(n.address), mac_str(m)) for m, n in nodes.items()]


def test_router_by_time_exceeded_silent_router_by_the_target_answer():
    nodes = _cafe()
    link = FakeLink(nodes)
    seen = []
    result = probe_forwarding(link, _hosts(nodes) + [(PROBE_IP, mac_str(PROBE_MAC))], PROBE_IP, TARGET,
                              rate=2000, progress=lambda *a: seen.append(a))
    by_address = {str(f.address): f for f in result.forwarders}
    assert set(by_address) == {"198.18.70.1", "198.18.70.2"}
    a, b = by_address["198.18.70.1"], by_address["198.18.70.2"]
    assert (a.how, str(a.answered_from), a.mac) == ("ttl_exceeded", "198.18.70.1", mac_str(_mac(1)))
    assert (b.how, b.answered_from, b.mac) == ("tcp_answer", TARGET, mac_str(_mac(2)))
    assert a.path == [] and b.path == [] and a.rtt_ms >= 0
    n = len(nodes)  # the probe itself was skipped
    assert result.hosts == n and result.syn_enabled and result.follow_hops == 0
    # Answered at once: the router is asked once; every other host three times, then the SYN.
    assert result.ttl1_sent == 1 + (n - 1) * 3
    assert result.syn_sent == 1 + (n - 2) * 3
    assert result.follow_sent == 0
    assert link.frames_to(_mac(1), ttl=64) == []  # it answered TTL 1: nothing of ours left through it
    assert link.frames_to(PROBE_MAC) == []
    ports = {p[TCP].sport for m in nodes for p in link.frames_to(m)}
    assert len(ports) == n and all(32768 <= p <= 60999 for p in ports)
    assert len({p[IP].id for m in nodes for p in link.frames_to(m)}) == n
    assert seen[-1] == (n, n, 2)


def test_no_syn_sends_nothing_past_ttl_one_and_misses_the_silent_router():
    nodes = _cafe()
    link = FakeLink(nodes)
    result = probe_forwarding(link, _hosts(nodes), PROBE_IP, TARGET, syn=False, rate=2000)
    assert [str(f.address) for f in result.forwarders] == ["198.18.70.1"]
    assert result.syn_sent == 0 and not result.syn_enabled
    assert all(Ether(f)[IP].ttl == 1 for _, f in link.sent)


def test_following_finds_each_egress_and_stops_at_the_target():
    nodes = _cafe()
    link = FakeLink(nodes)
    result = probe_forwarding(link, _hosts(nodes), PROBE_IP, TARGET, follow_hops=5, rate=2000)
    a, b = result.forwarders
    assert [(h.ttl, str(h.address)) for h in a.path] == [(2, "203.0.113.1"), (3, "203.0.113.254")]
    assert str(a.egress) == "203.0.113.1"
    # A silent hop is recorded as such, and following goes on past it.
    assert [(h.ttl, h.address and str(h.address)) for h in b.path] == [
        (2, "198.51.100.1"), (3, None), (4, "198.51.100.254")]
    assert str(b.egress) == "198.51.100.1"
    # TTL 4 (a) and 5 (b) reached the target: nothing above was sent.
    assert {p[IP].ttl for p in link.frames_to(_mac(1)) if p[IP].ttl > 1} == {2, 3, 4}
    assert {p[IP].ttl for p in link.frames_to(_mac(2)) if p[IP].ttl not in (1, 64)} == {2, 3, 4, 5}
    assert result.follow_sent == 3 + (1 + 3 + 1 + 1)  # b: the silent hop asked three times
    assert len({p[TCP].sport for m in (_mac(1), _mac(2)) for p in link.frames_to(m)}) == 2 + 3 + 4


def test_a_spent_icmp_budget_still_finds_the_router():
    """The router has no token left when the test starts: its first answer is eaten, the retry is not."""
    nodes = {_mac(1): Node("198.18.70.1", "router", tokens=0.0), _mac(3): Node("198.18.70.3", "host")}
    link = FakeLink(nodes)
    result = probe_forwarding(link, _hosts(nodes), PROBE_IP, TARGET, syn=False, retries=1, rate=2000)
    assert [(str(f.address), f.how) for f in result.forwarders] == [("198.18.70.1", "ttl_exceeded")]
    assert len(link.frames_to(_mac(1))) == 2


def test_without_the_rate_limit_gap_the_same_router_is_hidden(monkeypatch):
    """The control for the test above: retries a reply window apart land inside the same second."""
    monkeypatch.setattr(forwarding, "ICMP_RATELIMIT", 0.0)
    nodes = {_mac(1): Node("198.18.70.1", "router", tokens=0.0), _mac(3): Node("198.18.70.3", "host")}
    link = FakeLink(nodes)
    # Linux's own second, not the shrunk one: a busy machine can stretch a 0.03 s reply window past 0.1 s,
    # and the control must not start passing because the token came back meanwhile.
    link.TOKEN_SECONDS = 1.0
    result = probe_forwarding(link, _hosts(nodes), PROBE_IP, TARGET, syn=False, retries=1, rate=2000)
    assert result.forwarders == []


def test_retries_find_both_routers_through_a_lossy_switch():
    for seed in range(3):
        nodes = _cafe()
        link = FakeLink(nodes, loss=0.3, seed=seed)
        result = probe_forwarding(link, _hosts(nodes), PROBE_IP, TARGET, retries=8, rate=2000)
        assert {str(f.address) for f in result.forwarders} == {"198.18.70.1", "198.18.70.2"}
        # only the silent are asked again
        assert result.ttl1_sent < len(nodes) * 9


def test_pacing_and_retry_gaps():
    nodes = _cafe()
    link = FakeLink(nodes)
    rate = 400.0
    probe_forwarding(link, _hosts(nodes), PROBE_IP, TARGET, rate=rate)
    times = [t for t, _ in link.sent]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.9 / rate
    plain = [t for t, f in link.sent if f[:6] == _mac(5) and Ether(f)[IP].ttl == 1]
    assert len(plain) == 3 and all(b - a >= 0.105 for a, b in zip(plain, plain[1:]))


def test_bad_arguments():
    link = FakeLink({})
    hosts = [(IPv4Address("198.18.70.1"), "02:70:00:00:00:01")]
    for kwargs in ({"rate": 0}, {"retries": -1}, {"follow_hops": -1}, {"port": 0}, {"port": 70000}):
        with pytest.raises(ValueError):
            probe_forwarding(link, hosts, PROBE_IP, TARGET, **kwargs)
    with pytest.raises(ValueError):
        probe_forwarding(link, [(IPv4Address("198.18.70.1"), "02:70:00")], PROBE_IP, TARGET)
    many = [(IPv4Address(int(IPv4Address("198.18.0.1")) + i), mac_str(_mac(1))) for i in range(10_000)]
    with pytest.raises(ValueError):
        probe_forwarding(link, many, PROBE_IP, TARGET, follow_hops=2)
    empty = probe_forwarding(link, [], PROBE_IP, TARGET)
    assert empty.hosts == 0 and empty.forwarders == [] and link.sent == []
