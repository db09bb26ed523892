"""NetBIOS node status (``nbtstat -A``): who a café terminal says it is.

A node-status query (RFC 1002 §4.2.17) asks a host for its NetBIOS name
table; the answer (§4.2.18) lists the names it has registered (computer
name, workgroup, services) and, from Windows, the adapter MAC in the
statistics block. The computer name is what ties an IP address to the
machine number painted on the café's terminal.

The first section is a pure codec: bytes in, typed values out, no I/O.
Answers come from the network, so :func:`parse_answer` treats them as
hostile: whatever the bytes, it returns a :class:`NodeStatus` or raises
:class:`NetbiosParseError`, nothing else.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import struct
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from scapy.fields import (
    ByteField,
    FieldLenField,
    IntField,
    MACField,
    NetBIOSNameField,
    PacketListField,
    ShortEnumField,
    ShortField,
    StrFixedLenField,
    XShortField,
)
from scapy.layers.netbios import NBNSHeader, NBNSNodeStatusRequest, NBNSNodeStatusResponseService
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from probe.net.link import Frame, RawLink, mac_str, parse_udp
from probe.net.rounds import expected_misses, reply_window
from probe.observations import NetbiosAnswer, NetbiosError, NetbiosName, NetbiosSurvey, SweepRound, machine_name

__all__ = [
    "MAX_PAYLOAD",
    "NBNSNodeStatusAnswer",
    "NetbiosParseError",
    "NodeStatus",
    "build_answer",
    "build_query",
    "machine_name",
    "parse_answer",
    "survey",
]

# ---------------------------------------------------------------------------
# Node-status codec (RFC 1002 §4.2.17 / §4.2.18) — pure, no network I/O
# ---------------------------------------------------------------------------

# Larger than any answer a host sends over Ethernet without fragmentation
# (1472 bytes of UDP payload); anything bigger is refused before it is read.
MAX_PAYLOAD = 1500

NBSTAT = 0x21
CLASS_IN = 0x01
_HEADER_LEN = 12
_ENTRY_LEN = 18  # 15-byte name, 1-byte suffix, 2-byte NAME_FLAGS
_STATISTICS_LEN = 46  # RFC 1002 §4.2.18: UNIT_ID (6) + 40 bytes of counters
_UNIT_ID_LEN = 6
_GROUP_BIT = 0x80  # G bit: top bit of NAME_FLAGS, i.e. of its first byte
_ACTIVE_BIT = 0x04  # ACT bit (0x0400 of NAME_FLAGS): Windows marks live names

# The wildcard name "*" padded with NULs, not spaces (RFC 1002 §4.1): the
# 16th byte (suffix 0x00) travels in the layers' SUFFIX field.
_WILDCARD = b"*" + b"\x00" * 14
_ENCODED_NAME_LEN = 34  # length byte + 32 half-byte letters + root label
_ENCODED_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOP")
# The only compression pointer NBNS uses: back to the question name at offset 12.
_NAME_POINTER = b"\xc0\x0c"

# A master browser registers "\x01\x02__MSBROWSE__\x02" <01>; it is the one
# legitimate name with control bytes in it, so it is mapped to a printable
# spelling rather than rejecting every answer from a master browser.
_MSBROWSE_WIRE = b"\x01\x02__MSBROWSE__\x02"
_MSBROWSE_NAME = "__MSBROWSE__"

_MAC_RE = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


class NetbiosParseError(ValueError):
    """A node-status answer that cannot be trusted; the message says why."""


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What a node-status answer says: its transaction, name table and unit ID."""

    transaction_id: int
    names: list[NetbiosName]
    unit_id: str | None  # MAC from the statistics block; None if the block is too short


class NBNSNodeStatusAnswer(Packet):
    """The answer record of a node-status response, as RFC 1002 §4.2.18 lays it out.

    scapy's own ``NBNSNodeStatusResponse`` is not used to build answers: it
    puts 46 bytes of statistics *after* the 6-byte MAC (52 in all, where the
    RFC's 46 include the UNIT_ID) and leaves RDLENGTH at a fixed 83 whatever
    the name count. This layer reuses scapy's name-table entry and computes
    RDLENGTH. It is stacked explicitly under ``NBNSHeader`` and deliberately
    not bound with ``bind_layers``: scapy already binds those header flags to
    its own layer, and rebinding would change dissection process-wide.
    """

    name = "NBNS node status answer (RFC 1002)"
    fields_desc = [
        NetBIOSNameField("RR_NAME", _WILDCARD),
        XShortField("SUFFIX", 0x4141),  # "AA": first-level encoding of suffix 0x00
        ByteField("NULL", 0),
        ShortEnumField("RR_TYPE", NBSTAT, {0x20: "NB", NBSTAT: "NBSTAT"}),
        ShortEnumField("RR_CLASS", CLASS_IN, {CLASS_IN: "INTERNET"}),
        IntField("TTL", 0),
        ShortField("RDLENGTH", None),
        FieldLenField("NUM_NAMES", None, fmt="B", count_of="NODE_NAME"),
        PacketListField(
            "NODE_NAME", [], NBNSNodeStatusResponseService, count_from=lambda pkt: pkt.NUM_NAMES
        ),
        MACField("UNIT_ID", "00:00:00:00:00:00"),
        StrFixedLenField("STATISTICS", b"", _STATISTICS_LEN - _UNIT_ID_LEN),
    ]

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        """Fill RDLENGTH with the length of everything after it."""
        if self.RDLENGTH is None:
            offset = _ENCODED_NAME_LEN + 8  # RR_NAME, RR_TYPE, RR_CLASS, TTL
            rdlength = len(pkt) - offset - 2
            pkt = pkt[:offset] + struct.pack("!H", rdlength) + pkt[offset + 2 :]
        return pkt + pay


def build_query(transaction_id: int) -> bytes:
    """UDP payload of a node-status request for the wildcard name "*".

    The NM_FLAGS are all clear (0x0000), as ``nbtstat -A`` sends them: the
    query goes unicast to one host, so the B (broadcast) flag that scapy's
    binding sets by default would be wrong.
    """
    _check_transaction_id(transaction_id)
    request = NBNSHeader(NAME_TRN_ID=transaction_id, OPCODE=0, NM_FLAGS=0, QDCOUNT=1) / (
        NBNSNodeStatusRequest(QUESTION_NAME=_WILDCARD, SUFFIX=0x4141, QUESTION_TYPE=NBSTAT)
    )
    return bytes(request)


def build_answer(transaction_id: int, names: Sequence[NetbiosName], mac: str) -> bytes:
    """A node-status response as a Windows host sends it (for the lab and tests).

    Flags 0x8400 (authoritative response), the wildcard as RR_NAME, TTL 0,
    every name marked active, and a 46-byte statistics block that starts
    with ``mac`` and has zero counters. Raises ValueError for input that a
    real host could not send (names over 15 GBK bytes, control characters,
    a bad MAC, or an answer over :data:`MAX_PAYLOAD`).
    """
    _check_transaction_id(transaction_id)
    if not _MAC_RE.fullmatch(mac):
        raise ValueError(f"not a colon-separated MAC: {mac!r}")
    entries = [
        NBNSNodeStatusResponseService(
            NETBIOS_NAME=_encode_name(entry),
            SUFFIX=entry.suffix,
            NAME_FLAGS=_ACTIVE_BIT | (_GROUP_BIT if entry.group else 0),
            UNUSED=0,
        )
        for entry in names
    ]
    if len(entries) > 255:
        raise ValueError("a name table holds at most 255 names")
    # NM_FLAGS 0x40 is AA alone: with RESPONSE set, the 0x8400 Windows sends.
    header = NBNSHeader(NAME_TRN_ID=transaction_id, RESPONSE=1, OPCODE=0, NM_FLAGS=0x40, ANCOUNT=1)
    answer = header / NBNSNodeStatusAnswer(NODE_NAME=entries, UNIT_ID=mac.lower())
    payload = bytes(answer)
    if len(payload) > MAX_PAYLOAD:
        # parse_answer refuses these, so the lab must not send them either.
        raise ValueError(f"answer of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return payload


def parse_answer(payload: bytes) -> NodeStatus:
    """Read a node-status response; raise NetbiosParseError for anything else.

    Accepts RR_NAME both fully encoded and as the 0xC00C pointer, with or
    without the question echoed (QDCOUNT 0 or 1). Rejected, with a short
    reason: input over :data:`MAX_PAYLOAD` bytes, truncation anywhere,
    requests, opcodes other than query, error codes, record types other than
    NBSTAT, counts that disagree with the bytes, trailing bytes, and names
    that are empty or hold control characters.
    """
    try:
        return _parse_answer(payload)
    except NetbiosParseError:
        raise
    except Exception as exc:  # the contract: hostile bytes never surface as another type
        raise NetbiosParseError(f"malformed answer ({type(exc).__name__})") from exc


def _check_transaction_id(transaction_id: int) -> None:
    if not 0 <= transaction_id <= 0xFFFF:
        raise ValueError(f"transaction id {transaction_id} is not a 16-bit value")


def _encode_name(entry: NetbiosName) -> bytes:
    """The 15 name bytes of a table entry: GBK, space-padded as Windows pads them."""
    if entry.name == _MSBROWSE_NAME and entry.suffix == 0x01:
        return _MSBROWSE_WIRE
    if not 0 <= entry.suffix <= 0xFF:
        raise ValueError(f"suffix {entry.suffix} of {entry.name!r} is not a byte")
    if _has_control(entry.name):
        raise ValueError(f"name {entry.name!r} contains control characters")
    try:
        raw = entry.name.encode("gbk")
    except UnicodeEncodeError:
        raise ValueError(f"name {entry.name!r} has no GBK encoding") from None
    if not raw.strip(b" ") or len(raw) > 15:
        raise ValueError(f"name {entry.name!r} is empty or longer than 15 GBK bytes")
    return raw.ljust(15, b" ")


def _has_control(text: str) -> bool:
    # Category Cc is exactly C0, DEL and C1: bytes that would reach reports
    # and terminals as control codes.
    return any(unicodedata.category(ch) == "Cc" for ch in text)


class _Reader:
    """A cursor over the payload that refuses to read past its end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int, what: str) -> bytes:
        if count > len(self.data) - self.pos:
            raise NetbiosParseError(f"truncated {what}")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def peek(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise NetbiosParseError(f"truncated {what}")
        return self.data[self.pos]

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _parse_answer(payload: bytes) -> NodeStatus:
    # Explicit, bounds-checked slicing decides the structure; scapy only
    # decodes fixed-size slices already known to be complete. scapy's own
    # response layer cannot read the pointer form of RR_NAME, and its
    # dissector silently shortens lists and strings on short input, which
    # would turn a truncated answer into a plausible one.
    if not isinstance(payload, (bytes, bytearray)):
        raise NetbiosParseError("payload is not bytes")
    if len(payload) > MAX_PAYLOAD:  # checked before copying anything
        raise NetbiosParseError(f"answer longer than {MAX_PAYLOAD} bytes")
    reader = _Reader(bytes(payload))

    header = NBNSHeader(reader.take(_HEADER_LEN, "header"))
    if not header.RESPONSE:
        raise NetbiosParseError("not a response")
    if header.OPCODE != 0:
        raise NetbiosParseError(f"opcode {header.OPCODE} is not a query response")
    if header.RCODE != 0:
        raise NetbiosParseError(f"error response (rcode {header.RCODE})")
    if header.ANCOUNT != 1:
        raise NetbiosParseError(f"{header.ANCOUNT} answer records, expected 1")
    if header.QDCOUNT > 1 or header.NSCOUNT or header.ARCOUNT:
        raise NetbiosParseError("unexpected question, authority or additional records")

    if header.QDCOUNT:
        # Some stacks echo the question; the 0xC00C pointer then refers to it.
        _read_encoded_name(reader, "question name")
        qtype, qclass = struct.unpack("!HH", reader.take(4, "question"))
        if qtype != NBSTAT or qclass != CLASS_IN:
            raise NetbiosParseError("question is not NBSTAT/IN")

    if reader.peek("RR_NAME") & 0xC0 == 0xC0:
        if reader.take(2, "RR_NAME pointer") != _NAME_POINTER:
            raise NetbiosParseError("RR_NAME pointer is not 0xC00C")
    else:
        _read_encoded_name(reader, "RR_NAME")

    rr_type, rr_class, _ttl, rdlength = struct.unpack("!HHIH", reader.take(10, "answer record"))
    if rr_type != NBSTAT:
        raise NetbiosParseError(f"record type 0x{rr_type:04x} is not NBSTAT")
    if rr_class != CLASS_IN:
        raise NetbiosParseError(f"record class {rr_class} is not IN")
    rdata = reader.take(rdlength, f"RDATA ({rdlength} bytes declared)")
    if reader.left:
        raise NetbiosParseError(f"trailing data after the answer record ({reader.left} bytes)")

    if not rdata:
        raise NetbiosParseError("empty RDATA")
    count = rdata[0]  # one byte: never more than 255 names
    table_end = 1 + count * _ENTRY_LEN
    if table_end > len(rdata):
        raise NetbiosParseError(f"{count} names do not fit in RDLENGTH {rdlength}")

    names = []
    for index in range(count):
        start = 1 + index * _ENTRY_LEN
        entry = NBNSNodeStatusResponseService(rdata[start : start + _ENTRY_LEN])
        names.append(
            NetbiosName(
                name=_decode_name(bytes(entry.NETBIOS_NAME), index),
                suffix=entry.SUFFIX,
                group=bool(entry.NAME_FLAGS & _GROUP_BIT),
            )
        )

    # Statistics may be shorter than the RFC's 46 bytes (or absent); only the
    # UNIT_ID is read, and only if all six bytes are there. Samba sends zeros.
    statistics = rdata[table_end:]
    unit_id = None
    if len(statistics) >= _UNIT_ID_LEN:
        unit_id = ":".join(f"{byte:02x}" for byte in statistics[:_UNIT_ID_LEN])

    return NodeStatus(transaction_id=header.NAME_TRN_ID, names=names, unit_id=unit_id)


def _read_encoded_name(reader: _Reader, what: str) -> None:
    """Consume a full first-level-encoded name (length 32, A–P letters, root label)."""
    raw = reader.take(_ENCODED_NAME_LEN, what)
    if raw[0] != 0x20 or not _ENCODED_ALPHABET.issuperset(raw[1:33]):
        raise NetbiosParseError(f"malformed {what}")
    if raw[33] != 0:
        raise NetbiosParseError(f"{what} carries a NetBIOS scope (not supported)")


def _decode_name(raw: bytes, index: int) -> str:
    """Decode one 15-byte table name: GBK (cp936 OEM codepage), else latin-1."""
    if raw == _MSBROWSE_WIRE:
        return _MSBROWSE_NAME
    stripped = raw.rstrip(b" \x00")  # padding: spaces from Windows, NULs from others
    if not stripped:
        raise NetbiosParseError(f"name {index + 1} is empty")
    try:
        text = stripped.decode("gbk")
    except UnicodeDecodeError:
        # latin-1 maps every byte, so a non-GBK name is kept, not lost.
        text = stripped.decode("latin-1")
    if _has_control(text):
        raise NetbiosParseError(f"name {index + 1} contains control characters")
    return text


# ---------------------------------------------------------------------------
# Survey: node-status queries to the live hosts over the run's raw link
# ---------------------------------------------------------------------------


class _Answers:
    """Answers matched to queries by source address and transaction id (receiver thread)."""

    def __init__(self, probe_ip: int, sport: int, expected: dict[int, int]) -> None:
        self.probe_ip = probe_ip
        self.sport = sport
        self.expected = expected  # address -> transaction id sent to it
        self.answers: dict[int, NetbiosAnswer] = {}
        self.errors: dict[int, str] = {}
        self.last_sent: dict[int, float] = {}  # address -> link time of the latest query
        self.rtts: list[float] = []
        self.changed = threading.Event()

    def on_frame(self, frame: Frame) -> None:
        udp = parse_udp(frame.data)
        if udp is None or udp.dport != self.sport or udp.sport != 137 or udp.dst != self.probe_ip:
            return
        if udp.src not in self.expected or udp.src in self.answers:
            return
        try:
            status = parse_answer(udp.payload)
        except NetbiosParseError as exc:
            self.errors[udp.src] = str(exc)
            self.changed.set()
            return
        if status.transaction_id != self.expected[udp.src]:
            return  # a stale or forged answer: keep asking
        if (sent := self.last_sent.get(udp.src)) is not None:
            self.rtts.append(max(0.0, frame.time - sent))
        self.answers[udp.src] = NetbiosAnswer(address=IPv4Address(udp.src), mac=mac_str(udp.eth_src),
                                              names=status.names, unit_id=status.unit_id)
        self.errors.pop(udp.src, None)
        self.changed.set()


@contextlib.contextmanager
def _reply_port(iface: str) -> Iterator[int]:
    """A UDP port held open on the interface for the survey.

    Answers arrive at the raw link either way; holding the port keeps the
    probe's own kernel (when the probe address is configured) from answering
    each of them with ICMP port-unreachable.
    """
    for _ in range(20):
        port = secrets.randbelow(65535 - 49152) + 49152
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
            sock.bind(("0.0.0.0", port))
        except OSError:
            sock.close()
            continue
        try:
            yield port
        finally:
            sock.close()
        return
    raise OSError("no free UDP port for NetBIOS answers")


def survey(
    link: RawLink,
    hosts: Sequence[tuple[IPv4Address, str]],
    probe_ip: IPv4Address,
    *,
    rate: float = 1000.0,
    retries: int = 8,
    min_wait: float = 0.1,
    max_wait: float = 0.5,
    loss_floor: float = 0.05,
    accepted_misses: float = 0.001,
    progress: Callable[[int, int, int], None] | None = None,
) -> NetbiosSurvey:
    """Ask each (address, MAC) for its name table, paced, re-asking only the silent ones.

    Queries are framed straight to the MAC the sweep found, so no ARP is
    needed and the probe's kernel routing plays no part. After each pass the
    survey listens a reply window learned from the answers so far (between
    ``min_wait`` and ``max_wait`` seconds), then asks the silent hosts again,
    until the loss measured on this run says that no host able to answer is
    still unheard (fewer than ``accepted_misses`` expected, the ARP sweep's
    rule, :mod:`probe.net.rounds`), at most ``retries`` times. Hosts that
    never answer (no NetBIOS, a firewall) are asked on every pass.
    """
    if rate <= 0 or retries < 0:
        raise ValueError("rate must be > 0 and retries >= 0")
    start = time.monotonic()
    targets = {int(addr): mac for addr, mac in hosts}
    base = secrets.randbelow(0x10000)
    expected = {ip: (base + i) & 0xFFFF for i, ip in enumerate(sorted(targets))}
    passes: list[SweepRound] = []
    with _reply_port(link.iface) as sport:
        state = _Answers(int(probe_ip), sport, expected)
        unsubscribe = link.subscribe(state.on_frame)
        try:
            for rnd in range(1, retries + 2):
                pending = [ip for ip in sorted(targets) if ip not in state.answers]
                if not pending:
                    break
                heard_before = len(state.answers)
                t0 = time.monotonic()
                for i, ip in enumerate(pending):
                    delay = t0 + i / rate - time.monotonic()
                    if delay > 0.0005:
                        time.sleep(delay)
                    frame = (Ether(src=mac_str(link.mac), dst=targets[ip])
                             / IP(src=str(probe_ip), dst=str(IPv4Address(ip)))
                             / UDP(sport=sport, dport=137) / Raw(build_query(expected[ip])))
                    state.last_sent[ip] = link.now()
                    link.send(bytes(frame))
                    if progress and (i % 32 == 0 or i == len(pending) - 1):
                        progress(rnd, i + 1, len(pending))
                deadline = time.monotonic() + reply_window(state.rtts, min_wait, max_wait)
                while (left := deadline - time.monotonic()) > 0:
                    if all(ip in state.answers or ip in state.errors for ip in pending):
                        break
                    state.changed.clear()
                    state.changed.wait(min(left, 0.01))
                passes.append(SweepRound(round=rnd, asked=len(pending), answered=len(state.answers) - heard_before,
                                         seconds=round(time.monotonic() - t0, 4)))
                if rnd >= 2 and expected_misses([p.answered for p in passes], loss_floor) < accepted_misses:
                    break
        finally:
            unsubscribe()
    return NetbiosSurvey(
        queried=len(targets), rounds=len(passes), passes=passes,
        answers=[state.answers[ip] for ip in sorted(state.answers)],
        errors=[NetbiosError(address=IPv4Address(ip), error=e) for ip, e in sorted(state.errors.items())],
        seconds=round(time.monotonic() - start, 4))
