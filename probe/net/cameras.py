"""Cameras and NVRs on the café LAN: WS-Discovery, Hikvision SADP, Dahua DHIP and RTSP OPTIONS.

VIDEO-SYSTEM asks whether the café's cameras and recorder are there. No one
method finds them all (DESIGN §7): ONVIF cameras answer WS-Discovery, but
Hikvision from firmware 5.5 and most NVRs ship with ONVIF off; those still
answer their vendor's own discovery (SADP on UDP 37020, DHIP on UDP 37810)
and an RTSP ``OPTIONS`` on TCP 554. The survey asks all four ways and merges
the answers per address.

What leaves the probe, all of it on the LAN only:

* WS-Discovery ``Probe`` (SOAP 1.2 over UDP, the 2005/04 WS-Discovery
  namespace that ONVIF uses) to 239.255.255.250:3702, twice per round: once
  for ``dn:NetworkVideoTransmitter`` (cameras) and once for ``tds:Device``
  (ONVIF Core's type for every device, which NVRs without the camera type
  still match). An untyped Probe is not sent: Windows PCs and printers
  answer that one too. Each Probe has a fresh ``urn:uuid`` MessageID and
  only answers whose RelatesTo names one of ours count.
* SADP ``Probe`` (a small XML document with a fresh upper-case Uuid,
  ``Types`` ``inquiry``) to 239.255.255.250:37020, as Hikvision's SADP tool
  sends it; the ProbeMatch carries the same Uuid.
* DHIP ``DHDiscover.search`` (a 32-byte header: size 32 little-endian,
  ``DHIP``, eight zero bytes, the body length twice as 64-bit little-endian,
  then JSON) to 255.255.255.255:37810. Dahua's ConfigTool also sends it to
  239.255.255.251; the limited broadcast reaches the same sockets without a
  multicast group and cannot be routed. Answers carry no request id: they
  are matched by the probe's own source port.
* RTSP ``OPTIONS`` over the kernel's TCP stack to port 554 of every swept
  host; the raw link still records those frames.

The multicast and broadcast frames go out through :class:`RawLink` with IP
TTL 1, so they are in the run's capture and no router forwards them.
Answers are unicast to the probe's address and source port; SADP answers
multicast to the group are taken too (both forms occur). One UDP socket is
held on that port so the probe's kernel does not answer each of them with a
port-unreachable. Answers longer than one frame arrive as IP fragments and
are put together here (bounded), because the raw link sees frames, not
datagrams.

Everything that arrives is hostile. XML is read with defusedxml (no DTD, no
entities, no external references) and only after a size check; JSON with a
size check and its own depth limit caught; every text kept is cut to a
bound and cleared of control characters. The parsers return a typed answer
or raise :class:`CameraError`, nothing else; the survey turns those errors
into :class:`CameraProblem` entries.

Frames get lost: discovery is sent ``tries`` rounds, ``window`` seconds
apart, each with fresh ids; the kernel retransmits a lost SYN within the RTSP
timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import struct
import threading
import time
import unicodedata
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Literal
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from probe.net.link import Frame, RawLink, mac_str
from probe.observations import Camera, CameraProblem, CameraSurvey

__all__ = [
    "CameraError",
    "DhipAnswer",
    "RtspAnswer",
    "SadpAnswer",
    "WsAnswer",
    "build_dhip_probe",
    "build_rtsp_options",
    "build_sadp_probe",
    "build_ws_probe",
    "dhip_message",
    "is_onvif",
    "local_name",
    "parse_dhip_answer",
    "parse_rtsp_answer",
    "parse_sadp_answer",
    "parse_ws_answer",
    "read_xml",
    "survey",
]

How = Literal["ws-discovery", "rtsp", "sadp", "dhip"]

DISCOVERY_GROUP = IPv4Address("239.255.255.250")
GROUP_MAC = bytes.fromhex("01005e7ffffa")  # 01:00:5e + the group's low 23 bits
BROADCAST = IPv4Address("255.255.255.255")
WSD_PORT, SADP_PORT, DHIP_PORT, RTSP_PORT = 3702, 37020, 37810, 554

# A UDP datagram cannot be longer; anything claiming more is refused before parsing.
MAX_DATAGRAM = 64 * 1024
MAX_RTSP_ANSWER = 8 * 1024
MAX_TEXT = 256      # one value kept from an answer (model, serial, Server header)
MAX_URI = 512       # one WS-Discovery scope or service address
MAX_ITEMS = 32      # values kept per list (types, scopes, addresses)
MAX_PROBLEMS = 256  # a flood of garbage must not grow the observations without end

SOAP_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
ONVIF_DN = "http://www.onvif.org/ver10/network/wsdl"
ONVIF_TDS = "http://www.onvif.org/ver10/device/wsdl"
WS_PROBE_TYPES = ("dn:NetworkVideoTransmitter", "tds:Device")

_UUID_URN = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUID_UPPER = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")
_QNAME = re.compile(r"[A-Za-z_][\w.-]*:[A-Za-z_][\w.-]*")
_MAC = re.compile(r"[0-9a-fA-F]{2}([-:])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}")
_STATUS_LINE = re.compile(r"RTSP/(\d)\.(\d) ([1-5]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")

DHIP_MAGIC = b"DHIP"
DHIP_HEADER = 32


class CameraError(ValueError):
    """An answer that cannot be trusted; the message says why (one line)."""


# ---------------------------------------------------------------------------
# Shared readers: bounded, hostile-input-safe
# ---------------------------------------------------------------------------


def local_name(tag: object) -> str:
    """The local part of an ElementTree tag, whatever prefix or namespace a vendor used."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def read_xml(payload: bytes, what: str) -> Element:
    """Parse untrusted XML: size-checked first, no DTD, entities or external references."""
    if not isinstance(payload, (bytes, bytearray)):
        raise CameraError(f"{what}: not bytes")
    if len(payload) > MAX_DATAGRAM:
        raise CameraError(f"{what}: {len(payload)} bytes, more than {MAX_DATAGRAM}")
    try:
        return SafeET.fromstring(bytes(payload), forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise CameraError(f"{what}: refused XML ({type(exc).__name__})") from None
    except ParseError as exc:
        raise CameraError(f"{what}: not well-formed XML ({exc})") from None
    except (ValueError, LookupError, RecursionError, MemoryError) as exc:
        # expat raises ValueError/LookupError for unknown encodings, e.g. a declared GB2312.
        raise CameraError(f"{what}: unreadable XML ({type(exc).__name__})") from None


def _clean(value: object, limit: int = MAX_TEXT) -> str | None:
    """A value fit for a report: a string, no control characters, at most ``limit`` characters."""
    if not isinstance(value, str):
        return None
    text = "".join(ch for ch in value if unicodedata.category(ch) != "Cc").strip()
    return text[:limit] or None


def _child(parent: Element, name: str) -> Element | None:
    return next((el for el in parent if local_name(el.tag) == name), None)


def _child_text(parent: Element, name: str) -> str | None:
    el = _child(parent, name)
    return _clean(el.text) if el is not None else None


def _tokens(text: str | None, limit: int) -> list[str]:
    """Whitespace-separated values, each bounded; over-long or odd ones are dropped, not cut."""
    if not text:
        return []
    out = []
    for token in text.split()[:MAX_ITEMS]:
        clean = _clean(token, limit + 1)
        if clean and len(clean) <= limit:
            out.append(clean)
    return out


def _mac(text: str | None) -> str | None:
    """A MAC in any of the usual spellings as lowercase colon-separated, else None."""
    if not text or not _MAC.fullmatch(text.strip()):
        return None
    return text.strip().replace("-", ":").lower()


def _ipv4(text: object) -> IPv4Address | None:
    try:
        return IPv4Address(text) if isinstance(text, str) else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# WS-Discovery (ONVIF)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WsAnswer:
    """What a ProbeMatches says, merged over its ProbeMatch entries."""

    relates_to: str
    endpoints: list[str]
    types: list[str]
    scopes: list[str]
    xaddrs: list[str]


def build_ws_probe(message_id: str, types: str | None) -> bytes:
    """A WS-Discovery Probe as ONVIF clients send it (SOAP 1.2, WS-Addressing 2004/08).

    ``types`` is one QName with the prefix ``dn`` or ``tds`` (declared here),
    or None for an untyped Probe.
    """
    if not _UUID_URN.fullmatch(message_id):
        raise ValueError(f"MessageID {message_id!r} is not a lowercase urn:uuid")
    if types is not None and not _QNAME.fullmatch(types):
        raise ValueError(f"Types {types!r} is not one QName")
    probe = f"<d:Probe><d:Types>{types}</d:Types></d:Probe>" if types else "<d:Probe/>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:a="{WSA}" xmlns:d="{WSD}"'
        f' xmlns:dn="{ONVIF_DN}" xmlns:tds="{ONVIF_TDS}">'
        "<s:Header>"
        f'<a:Action s:mustUnderstand="1">{WSD}/Probe</a:Action>'
        f"<a:MessageID>{message_id}</a:MessageID>"
        f"<a:ReplyTo><a:Address>{WSA}/role/anonymous</a:Address></a:ReplyTo>"
        '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>'
        "</s:Header>"
        f"<s:Body>{probe}</s:Body>"
        "</s:Envelope>"
    ).encode()


def parse_ws_answer(payload: bytes) -> WsAnswer:
    """Read a ProbeMatches answer; raise CameraError for anything else.

    Elements are found by local name (vendors use every prefix there is).
    Required: a SOAP Envelope with a Body holding ProbeMatches, and a
    RelatesTo header. An empty ProbeMatches is valid and says nothing.
    """
    root = read_xml(payload, "WS-Discovery")
    if local_name(root.tag) != "Envelope":
        raise CameraError("WS-Discovery: not a SOAP envelope")
    header, body = _child(root, "Header"), _child(root, "Body")
    if header is None or body is None:
        raise CameraError("WS-Discovery: envelope without Header or Body")
    action = _child_text(header, "Action")
    if action is not None and not action.endswith("/ProbeMatches"):
        raise CameraError(f"WS-Discovery: action {action[:80]!r} is not ProbeMatches")
    matches = _child(body, "ProbeMatches")
    if matches is None:
        raise CameraError("WS-Discovery: no ProbeMatches in the body")
    relates_to = _child_text(header, "RelatesTo")
    if relates_to is None:
        raise CameraError("WS-Discovery: no RelatesTo")
    endpoints: list[str] = []
    types: list[str] = []
    scopes: list[str] = []
    xaddrs: list[str] = []
    for match in (el for el in matches if local_name(el.tag) == "ProbeMatch"):
        reference = _child(match, "EndpointReference")
        address = _child_text(reference, "Address") if reference is not None else None
        _extend(endpoints, [address] if address else [])
        _extend(types, _tokens(_child_text_raw(match, "Types"), MAX_TEXT))
        _extend(scopes, _tokens(_child_text_raw(match, "Scopes"), MAX_URI))
        _extend(xaddrs, _tokens(_child_text_raw(match, "XAddrs"), MAX_URI))
    return WsAnswer(relates_to=relates_to, endpoints=endpoints, types=types, scopes=scopes, xaddrs=xaddrs)


def _child_text_raw(parent: Element, name: str) -> str | None:
    # Lists are split before cleaning: their separators are whitespace, which _clean would keep.
    el = _child(parent, name)
    return el.text[: MAX_ITEMS * (MAX_URI + 1)] if el is not None and isinstance(el.text, str) else None


def _extend(into: list[str], items: Sequence[str]) -> None:
    for item in items:
        if item not in into and len(into) < MAX_ITEMS:
            into.append(item)


def is_onvif(answer: WsAnswer) -> bool:
    """Whether a ProbeMatches describes an ONVIF device (a camera's type or ONVIF scopes).

    ``tds:Device`` alone is not enough: its local name is the same as the
    devices profile's ``wsdp:Device`` of printers and PCs, and prefixes in
    text values cannot be resolved here. Every ONVIF device carries
    ``onvif://www.onvif.org/`` scopes (ONVIF Core, discovery).
    """
    return (any(t.rsplit(":", 1)[-1] == "NetworkVideoTransmitter" for t in answer.types)
            or any(s.lower().startswith("onvif://www.onvif.org/") for s in answer.scopes))


# ---------------------------------------------------------------------------
# Hikvision SADP
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SadpAnswer:
    """The fields of a SADP ProbeMatch the survey keeps."""

    uuid: str
    device_type: str | None
    description: str | None
    serial: str | None
    mac: str | None
    ipv4: IPv4Address | None

    @property
    def model(self) -> str | None:
        # DeviceDescription holds the model name; DeviceType is often a numeric class.
        return self.description or self.device_type


def build_sadp_probe(probe_uuid: str) -> bytes:
    """A SADP inquiry as Hikvision's SADP tool sends it (upper-case Uuid, Types ``inquiry``)."""
    if not _UUID_UPPER.fullmatch(probe_uuid):
        raise ValueError(f"Uuid {probe_uuid!r} is not an upper-case UUID")
    return (f'<?xml version="1.0" encoding="utf-8"?><Probe><Uuid>{probe_uuid}</Uuid>'
            "<Types>inquiry</Types></Probe>").encode()


def parse_sadp_answer(payload: bytes) -> SadpAnswer:
    """Read a SADP ProbeMatch; raise CameraError for anything else (a Probe, garbage, a bomb)."""
    root = read_xml(payload, "SADP")
    if local_name(root.tag) != "ProbeMatch":
        raise CameraError(f"SADP: root element {local_name(root.tag)[:40]!r} is not ProbeMatch")
    probe_uuid = _child_text(root, "Uuid")
    if probe_uuid is None:
        raise CameraError("SADP: ProbeMatch without Uuid")
    return SadpAnswer(uuid=probe_uuid, device_type=_child_text(root, "DeviceType"),
                      description=_child_text(root, "DeviceDescription"), serial=_child_text(root, "DeviceSN"),
                      mac=_mac(_child_text(root, "MAC")), ipv4=_ipv4(_child_text(root, "IPv4Address")))


# ---------------------------------------------------------------------------
# Dahua DHIP
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DhipAnswer:
    """The fields of a DHIP ``client.notifyDevInfo`` the survey keeps."""

    mac: str | None
    device_type: str | None
    device_class: str | None
    serial: str | None
    ipv4: IPv4Address | None


def build_dhip_probe() -> bytes:
    """A DHIP ``DHDiscover.search``: the 32-byte header then the JSON body."""
    body = json.dumps({"method": "DHDiscover.search", "params": {"mac": "", "uni": 1}},
                      separators=(",", ":")).encode()
    return dhip_frame(body)


def dhip_frame(body: bytes) -> bytes:
    """``body`` behind a DHIP header (the magic as bytes: packed as an integer it comes out reversed)."""
    return struct.pack("<I4s8sQQ", DHIP_HEADER, DHIP_MAGIC, bytes(8), len(body), len(body)) + body


def dhip_message(payload: bytes) -> dict:
    """The JSON object of a DHIP datagram, header checked; raise CameraError otherwise."""
    if not isinstance(payload, (bytes, bytearray)):
        raise CameraError("DHIP: not bytes")
    if len(payload) > MAX_DATAGRAM:
        raise CameraError(f"DHIP: {len(payload)} bytes, more than {MAX_DATAGRAM}")
    if len(payload) < DHIP_HEADER:
        raise CameraError("DHIP: shorter than its header")
    size, magic, _ids, length, length2 = struct.unpack_from("<I4s8sQQ", payload)
    if size != DHIP_HEADER or magic != DHIP_MAGIC:
        raise CameraError("DHIP: bad header")
    if length > len(payload) - DHIP_HEADER:
        raise CameraError(f"DHIP: body of {length} bytes declared, {len(payload) - DHIP_HEADER} present")
    body = bytes(payload[DHIP_HEADER:DHIP_HEADER + length]).rstrip(b"\x00\r\n\t ")
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: deeply nested arrays; ValueError: bad JSON or over-long integers.
        raise CameraError(f"DHIP: body is not JSON ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise CameraError("DHIP: body is not a JSON object")
    return message


def parse_dhip_answer(payload: bytes) -> DhipAnswer:
    """Read a DHIP device answer (``client.notifyDevInfo``); raise CameraError for anything else."""
    message = dhip_message(payload)
    if message.get("method") != "client.notifyDevInfo":
        raise CameraError(f"DHIP: method {str(message.get('method'))[:60]!r} is not client.notifyDevInfo")
    params = message.get("params")
    info = params.get("deviceInfo") if isinstance(params, dict) else None
    if not isinstance(info, dict):
        raise CameraError("DHIP: no deviceInfo")
    ipv4 = info.get("IPv4Address")
    return DhipAnswer(mac=_mac(_clean(message.get("mac"))), device_type=_clean(info.get("DeviceType")),
                      device_class=_clean(info.get("DeviceClass")), serial=_clean(info.get("SerialNo")),
                      ipv4=_ipv4(ipv4.get("IPAddress")) if isinstance(ipv4, dict) else None)


# ---------------------------------------------------------------------------
# RTSP
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtspAnswer:
    """The status line and the headers the survey keeps."""

    status: int
    reason: str | None
    server: str | None
    cseq: int | None


def build_rtsp_options(address: IPv4Address) -> bytes:
    """The one RTSP request sent: OPTIONS for the device's root, no credentials."""
    return (f"OPTIONS rtsp://{IPv4Address(address)}:{RTSP_PORT}/ RTSP/1.0\r\nCSeq: 1\r\n"
            "User-Agent: cafe-probe\r\n\r\n").encode()


def parse_rtsp_answer(data: bytes) -> RtspAnswer:
    """Read the head of an RTSP answer; raise CameraError if it is not one.

    The head ends at the first empty line; an answer cut short after a
    complete status line (the connection closed, or the time was up) is still
    read. Headers are "Name: value"; lines without a colon are skipped.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise CameraError("RTSP: not bytes")
    if len(data) > MAX_RTSP_ANSWER:
        raise CameraError(f"RTSP: answer over {MAX_RTSP_ANSWER} bytes")
    if not data.startswith(b"RTSP/"):
        raise CameraError("RTSP: not an RTSP answer")
    head = bytes(data).replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    lines = head.decode("latin-1").split("\n")
    if b"\n" not in data:
        raise CameraError("RTSP: status line incomplete")
    status = _STATUS_LINE.fullmatch(lines[0].rstrip("\r"))
    if status is None:
        raise CameraError(f"RTSP: bad status line {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() not in headers:
            headers[name.strip().lower()] = value.strip()
    cseq = headers.get("cseq", "")
    return RtspAnswer(status=int(status.group(3)), reason=_clean(status.group(4)),
                      server=_clean(headers.get("server")),
                      cseq=int(cseq) if cseq.isascii() and cseq.isdigit() and len(cseq) < 10 else None)


async def _rtsp_ask(address: IPv4Address, timeout: float) -> bytes | None:
    """OPTIONS to one host; the answer's head (bounded), or None when nothing came back."""
    data = bytearray()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(str(address), RTSP_PORT)
            writer.write(build_rtsp_options(address))
            await writer.drain()
            while len(data) < MAX_RTSP_ANSWER and b"\r\n\r\n" not in data:
                chunk = await reader.read(MAX_RTSP_ANSWER - len(data))
                if not chunk:
                    break
                data += chunk
    except (TimeoutError, OSError):
        pass  # refused, unreachable, silent, or slow: whatever came in time is judged below
    finally:
        if writer is not None:
            writer.close()
    return bytes(data) or None


# ---------------------------------------------------------------------------
# Receiving: IPv4 fragments put together, datagrams handed to the survey
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Datagram:
    eth_src: bytes
    src: int
    dst: int
    sport: int
    dport: int
    payload: bytes


@dataclass
class _Partial:
    eth_src: bytes = b""
    pieces: dict[int, bytes] = field(default_factory=dict)
    end: int | None = None
    size: int = 0


class _Reassembly:
    """UDP datagrams for chosen destinations out of untagged Ethernet/IPv4 frames, fragments joined.

    Bounded: at most ``MAX_PENDING`` datagrams in progress (the oldest is
    dropped), 64 pieces each, nothing past the IPv4 maximum; overlapping
    pieces drop the datagram (a reassembly-evasion trick, never a real stack).
    """

    MAX_PENDING = 16
    MAX_PIECES = 64

    def __init__(self, destinations: set[int]) -> None:
        self.destinations = destinations
        self.pending: OrderedDict[tuple[int, int, int], _Partial] = OrderedDict()

    def feed(self, data: bytes) -> _Datagram | None:
        if len(data) < 34 or data[12:14] != b"\x08\x00" or data[14] >> 4 != 4 or data[23] != 17:
            return None
        ihl = (data[14] & 0x0F) * 4
        total, ip_id, flags_frag = struct.unpack_from("!HHH", data, 16)
        src, dst = struct.unpack_from("!II", data, 26)
        if ihl < 20 or total < ihl or 14 + total > len(data) or dst not in self.destinations:
            return None
        body = data[14 + ihl:14 + total]  # the frame may carry Ethernet padding past the IP total
        more, offset = bool(flags_frag & 0x2000), (flags_frag & 0x1FFF) * 8
        eth_src = data[6:12]
        if more or offset:
            joined = self._join((src, dst, ip_id), eth_src, offset, body, more)
            if joined is None:
                return None
            eth_src, body = joined
        if len(body) < 8:
            return None
        sport, dport, length = struct.unpack_from("!HHH", body)
        if not 8 <= length <= len(body):
            return None
        return _Datagram(eth_src, src, dst, sport, dport, bytes(body[8:length]))

    def _join(self, key: tuple[int, int, int], eth_src: bytes, offset: int, piece: bytes,
              more: bool) -> tuple[bytes, bytes] | None:
        partial = self.pending.get(key)
        if partial is None:
            if len(self.pending) >= self.MAX_PENDING:
                self.pending.popitem(last=False)
            partial = self.pending[key] = _Partial()
        if offset == 0:
            partial.eth_src = eth_src
        overlaps = any(offset < start + len(p) and start < offset + len(piece) for start, p in partial.pieces.items())
        if (overlaps or offset + len(piece) > 65535 or len(partial.pieces) >= self.MAX_PIECES
                or (not more and partial.end is not None)):
            del self.pending[key]
            return None
        partial.pieces[offset] = piece
        partial.size += len(piece)
        if not more:
            partial.end = offset + len(piece)
        if partial.end is None or partial.size != partial.end or not partial.eth_src:
            return None
        del self.pending[key]
        if max(start + len(p) for start, p in partial.pieces.items()) != partial.end:
            return None  # a piece past the last one's end
        # No overlaps, none past the end, and the sizes add up to it: the pieces tile 0..end exactly.
        return partial.eth_src, b"".join(partial.pieces[start] for start in sorted(partial.pieces))


class _Inbox:
    """Datagrams for the survey, queued by the link's receiver thread, parsed by the survey.

    Parsing stays off the receiver thread (it also writes the capture); the
    queue is bounded in bytes so a flood costs lost answers, not memory.
    """

    MAX_QUEUED = 4 * 1024 * 1024

    def __init__(self, probe_ip: IPv4Address) -> None:
        self.probe_ip = int(probe_ip)
        self.reassembly = _Reassembly({self.probe_ip, int(DISCOVERY_GROUP)})
        self.queue: deque[_Datagram] = deque()
        self.queued = 0
        self.lock = threading.Lock()

    def on_frame(self, frame: Frame) -> None:
        if frame.outgoing:
            return
        datagram = self.reassembly.feed(frame.data)
        if datagram is None or datagram.src == self.probe_ip:
            return
        with self.lock:
            if self.queued + len(datagram.payload) <= self.MAX_QUEUED:
                self.queue.append(datagram)
                self.queued += len(datagram.payload)

    def take(self) -> list[_Datagram]:
        with self.lock:
            items = list(self.queue)
            self.queue.clear()
            self.queued = 0
        return items


# ---------------------------------------------------------------------------
# The survey
# ---------------------------------------------------------------------------


class _Findings:
    """Everything heard, per address, in the order the ways were found."""

    def __init__(self, macs: dict[int, str]) -> None:
        self.macs = macs
        self.cameras: dict[int, Camera] = {}
        self.problems: dict[tuple[int, str], CameraProblem] = {}

    def camera(self, address: int, how: How, eth_src: bytes | None) -> Camera:
        cam = self.cameras.get(address)
        if cam is None:
            mac = self.macs.get(address) or (mac_str(eth_src) if eth_src else None)
            cam = self.cameras[address] = Camera(address=IPv4Address(address), mac=mac)
        if how not in cam.how:
            cam.how.append(how)
        return cam

    def problem(self, address: int, how: How, error: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.setdefault((address, how), CameraProblem(address=IPv4Address(address), how=how,
                                                                  error=error[:MAX_TEXT]))

    def ws(self, dg: _Datagram, answer: WsAnswer) -> None:
        cam = self.camera(dg.src, "ws-discovery", dg.eth_src)
        _extend(cam.types, answer.types)
        _extend(cam.scopes, answer.scopes)
        _extend(cam.xaddrs, answer.xaddrs)

    def vendor(self, dg: _Datagram, how: How, model: str | None, serial: str | None) -> None:
        cam = self.camera(dg.src, how, dg.eth_src)
        cam.model = cam.model or model
        cam.serial = cam.serial or serial

    def rtsp(self, address: IPv4Address, data: bytes) -> None:
        if not data.startswith(b"RTSP/"):
            return  # something else listens on 554 (a web server, a proxy): not a camera
        try:
            answer = parse_rtsp_answer(data)
        except CameraError as exc:
            self.problem(int(address), "rtsp", str(exc))
            return
        cam = self.camera(int(address), "rtsp", None)
        cam.rtsp_status, cam.rtsp_server = answer.status, answer.server


class _Discovery:
    """The discovery questions of one survey and the matching of their answers."""

    def __init__(self, link: RawLink, probe_ip: IPv4Address, sport: int, findings: _Findings) -> None:
        self.link, self.probe_ip, self.sport, self.findings = link, probe_ip, sport, findings
        self.ws_ids: set[str] = set()
        self.sadp_ids: set[str] = set()
        self.sent = 0

    def frames(self) -> Iterator[bytes]:
        """One round: two WS-Discovery Probes, a SADP inquiry, a DHIP search; fresh ids each time."""
        for types in WS_PROBE_TYPES:
            message_id = f"urn:uuid:{uuid.uuid4()}"
            self.ws_ids.add(_message_key(message_id))
            yield self._frame(GROUP_MAC, DISCOVERY_GROUP, WSD_PORT, build_ws_probe(message_id, types))
        sadp_id = str(uuid.uuid4()).upper()
        self.sadp_ids.add(sadp_id)
        yield self._frame(GROUP_MAC, DISCOVERY_GROUP, SADP_PORT, build_sadp_probe(sadp_id))
        yield self._frame(b"\xff" * 6, BROADCAST, DHIP_PORT, build_dhip_probe())

    def _frame(self, dst_mac: bytes, dst: IPv4Address, dport: int, payload: bytes) -> bytes:
        # TTL 1: a router that forwards multicast or directed broadcast still drops these.
        return bytes(Ether(src=mac_str(self.link.mac), dst=mac_str(dst_mac))
                     / IP(src=str(self.probe_ip), dst=str(dst), ttl=1)
                     / UDP(sport=self.sport, dport=dport) / Raw(payload))

    def handle(self, dg: _Datagram) -> None:
        """Match one datagram to our questions; record the camera or the problem."""
        to_us = dg.dst == int(self.probe_ip) and dg.dport == self.sport
        if to_us:
            kind = _kind(dg)
        elif dg.dport == SADP_PORT and dg.dst == int(DISCOVERY_GROUP):
            kind = "sadp"  # SADP devices may answer to the group
        else:
            return
        parse = {"sadp": parse_sadp_answer, "dhip": parse_dhip_answer, "ws-discovery": parse_ws_answer}[kind]
        try:
            answer = parse(dg.payload)
        except CameraError as exc:
            if to_us:  # a group message that is not for us (another PC's SADP tool) is no problem
                self.findings.problem(dg.src, kind, str(exc))
            return
        if isinstance(answer, WsAnswer):
            if _message_key(answer.relates_to) in self.ws_ids and is_onvif(answer):
                self.findings.ws(dg, answer)
        elif isinstance(answer, SadpAnswer):
            if answer.uuid.upper() in self.sadp_ids:
                self.findings.vendor(dg, "sadp", answer.model, answer.serial)
        else:
            self.findings.vendor(dg, "dhip", answer.device_type, answer.serial)


def _message_key(message_id: str) -> str:
    # Some device stacks echo the MessageID as "uuid:…" or in upper case; the UUID is what identifies it.
    return message_id.strip().lower().removeprefix("urn:")


def _kind(dg: _Datagram) -> How:
    """Which question a datagram to our port answers: by its source port, else by its first bytes.

    Devices usually answer from the port they were asked on, but nothing
    obliges them to (a WS-Discovery stack may answer from another socket).
    """
    if dg.sport == SADP_PORT:
        return "sadp"
    if dg.sport == DHIP_PORT or dg.payload[4:8] == DHIP_MAGIC:
        return "dhip"
    if b"<ProbeMatch>" in dg.payload[:256]:
        return "sadp"  # SADP documents have no namespace prefixes; a SOAP envelope comes first in WS-Discovery
    return "ws-discovery"


@contextlib.contextmanager
def _answer_port(iface: str) -> Iterator[int]:
    """A UDP port the kernel picks and holds on the interface for the survey.

    The answers are read from the raw link; the socket only keeps the probe's
    own kernel from answering each of them with port-unreachable.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        sock.bind(("0.0.0.0", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()


async def _discover(inbox: _Inbox, discovery: _Discovery, window: float, tries: int) -> None:
    """Send ``tries`` rounds, ``window`` seconds apart, matching answers as they come."""
    for _ in range(tries):
        for frame in discovery.frames():
            discovery.link.send(frame)
            discovery.sent += 1
            await asyncio.sleep(0.005)  # a little space between frames for small device buffers
        deadline = time.monotonic() + window
        while (left := deadline - time.monotonic()) > 0:
            for dg in inbox.take():
                discovery.handle(dg)
            await asyncio.sleep(min(left, 0.02))
    for dg in inbox.take():
        discovery.handle(dg)


async def _check_rtsp(hosts: Sequence[IPv4Address], findings: _Findings, timeout: float, limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(address: IPv4Address) -> None:
        async with gate:
            data = await _rtsp_ask(address, timeout)
        if data is not None:
            findings.rtsp(address, data)

    await asyncio.gather(*(one(address) for address in hosts))


def survey(link: RawLink, hosts: list[tuple[IPv4Address, str]], probe_ip: IPv4Address, *, window: float = 2.0,
           tries: int = 2, rtsp: bool = True, rtsp_timeout: float = 1.5, max_concurrent: int = 32,
           rtsp_hosts: Sequence[IPv4Address] | None = None) -> CameraSurvey:
    """Find the LAN's cameras and NVRs by WS-Discovery, SADP, DHIP and RTSP OPTIONS.

    ``hosts`` are the swept (address, MAC) pairs: their MACs label the
    answers, and RTSP goes to each of them unless ``rtsp_hosts`` names the
    ones to ask (a run passes the hosts whose port 554 its service scan found
    open, so café PCs whose firewall drops 554 do not cost a timeout each
    twice over). Discovery runs ``tries`` rounds of
    ``window`` seconds; the RTSP checks (at most ``max_concurrent`` at once,
    ``rtsp_timeout`` seconds each) run alongside. Takes about
    ``tries * window`` seconds, or the RTSP checks' time if that is longer.
    """
    if window <= 0 or tries < 1 or rtsp_timeout <= 0 or max_concurrent < 1:
        raise ValueError("window and rtsp_timeout must be positive, tries and max_concurrent at least 1")
    start = time.monotonic()
    macs = {int(address): mac for address, mac in hosts}
    findings = _Findings(macs)
    inbox = _Inbox(probe_ip)
    wanted = macs if rtsp_hosts is None else {int(a) for a in rtsp_hosts}
    targets = sorted({IPv4Address(address) for address in wanted}) if rtsp else []
    with _answer_port(link.iface) as sport:
        discovery = _Discovery(link, probe_ip, sport, findings)
        unsubscribe = link.subscribe(inbox.on_frame)
        try:
            asyncio.run(_run(inbox, discovery, findings, targets, window, tries, rtsp_timeout, max_concurrent))
        finally:
            unsubscribe()
    return CameraSurvey(probes_sent=discovery.sent, rtsp_checked=len(targets),
                        cameras=[findings.cameras[a] for a in sorted(findings.cameras)],
                        problems=[findings.problems[k] for k in sorted(findings.problems)],
                        seconds=round(time.monotonic() - start, 4))


async def _run(inbox: _Inbox, discovery: _Discovery, findings: _Findings, targets: list[IPv4Address],
               window: float, tries: int, rtsp_timeout: float, max_concurrent: int) -> None:
    await asyncio.gather(_discover(inbox, discovery, window, tries),
                         _check_rtsp(targets, findings, rtsp_timeout, max_concurrent))
