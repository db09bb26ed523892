"""SNMP (read-only): what the café's registered routers and switches say about themselves.

For each ``servers.snmp`` target of the profile the collector reads the
system group, the interfaces (IF-MIB ifTable + ifXTable, with their IPv4
addresses from IP-MIB ipAddrTable), the IPv4 routes (inetCidrRouteTable,
else ipCidrRouteTable, else RFC 1213 ipRouteTable) and, where the device has
one, its learned MAC table (BRIDGE-MIB dot1dTpFdbTable, else Q-BRIDGE
dot1qTpFdbTable). It only ever sends GET and GETBULK.

The network part (:func:`collect_async`) uses pysnmp 7's asyncio API with
one SnmpEngine for all targets of a call (DESIGN.md §9) and our own timeout
and retries. Every per-target problem becomes an ``SnmpDevice(ok=False,
error=…)``; nothing about one device stops the others.

What the agents answer is turned into models by pure functions
(:func:`system_from`, :func:`interfaces_from`, :func:`routes_from`,
:func:`bridge_from`) that take ``(OID tuple, value)`` rows and treat every
value as hostile: a row or field that is not what the MIB says is skipped
(None), text is cut and cleaned, and nothing but :class:`SnmpError` is
ever raised.

Secrets (community, v3 keys) live in :class:`Credentials` only; they are
never printed, logged or put into an observation.
"""

from __future__ import annotations

import asyncio
import codecs
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, Literal

from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    usm3DESEDEPrivProtocol,
    usmAesCfb128Protocol,
    usmAesCfb192Protocol,
    usmAesCfb256Protocol,
    usmDESPrivProtocol,
    usmHMAC128SHA224AuthProtocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMAC256SHA384AuthProtocol,
    usmHMAC384SHA512AuthProtocol,
    usmHMACMD5AuthProtocol,
    usmHMACSHAAuthProtocol,
    usmNoPrivProtocol,
)
from pysnmp.proto import errind
from pysnmp.proto.rfc1905 import EndOfMibView

from probe.net.link import mac_str
from probe.observations import SnmpBridgeEntry, SnmpDevice, SnmpInterface, SnmpRoute
from probe.profile import SnmpTarget

__all__ = ["SnmpError", "Credentials", "read_credentials", "collect_async", "collect", "system_from",
           "interfaces_from", "routes_from", "default_routes", "bridge_from", "Row", "RouteTable"]

Row = tuple[tuple[int, ...], Any]
RouteTable = Literal["inetCidrRouteTable", "ipCidrRouteTable", "ipRouteTable"]
ErrorCode = Literal["timeout", "auth", "no_access", "credentials_unreadable", "protocol", "network"]

SNMP_PORT = 161
MAX_TEXT = 255  # DisplayString is SIZE (0..255); more is not a name
MAX_SECRET_BYTES = 1024
MAX_OID_LEN = 128  # RFC 2578 §3.5
MAX_DETAIL = 300
BULK_REPETITIONS = 25
INT32_MAX = 2**31 - 1
GAUGE_MAX = 2**32 - 1

# --- OIDs (numeric, so no MIB is loaded or compiled at run time) -------------------------------
SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_NAME = (1, 3, 6, 1, 2, 1, 1, 5, 0)
IF_ENTRY = (1, 3, 6, 1, 2, 1, 2, 2, 1)  # ifDescr 2, ifType 3, ifSpeed 5, ifPhysAddress 6, ifAdmin 7, ifOper 8
IF_COLUMNS = (2, 3, 5, 6, 7, 8)
IFX_ENTRY = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)  # ifName 1, ifHighSpeed 15
IFX_COLUMNS = (1, 15)
IPADDR_ENTRY = (1, 3, 6, 1, 2, 1, 4, 20, 1)  # ipAdEntIfIndex 2, ipAdEntNetMask 3; index = the address
IPADDR_COLUMNS = (2, 3)
INET_CIDR_ENTRY = (1, 3, 6, 1, 2, 1, 4, 24, 7, 1)  # inetCidrRouteIfIndex 7
INET_CIDR_IFINDEX = 7
IP_CIDR_ENTRY = (1, 3, 6, 1, 2, 1, 4, 24, 4, 1)  # ipCidrRouteIfIndex 5; index = dest.mask.tos.nexthop
IP_CIDR_IFINDEX = 5
IP_ROUTE_ENTRY = (1, 3, 6, 1, 2, 1, 4, 21, 1)  # ipRouteDest 1, IfIndex 2, NextHop 7, Mask 11
IP_ROUTE_COLUMNS = (1, 2, 7, 11)
FDB_ENTRY = (1, 3, 6, 1, 2, 1, 17, 4, 3, 1)  # dot1dTpFdbPort 2, dot1dTpFdbStatus 3; index = MAC
FDB_COLUMNS = (2, 3)
BASE_PORT_ENTRY = (1, 3, 6, 1, 2, 1, 17, 1, 4, 1)  # dot1dBasePortIfIndex 2; index = port
BASE_PORT_IFINDEX = 2
QFDB_ENTRY = (1, 3, 6, 1, 2, 1, 17, 7, 1, 2, 2, 1)  # dot1qTpFdbPort 2, Status 3; index = fdbId.MAC
QFDB_COLUMNS = (2, 3)

INET_IPV4 = 1  # InetAddressType ipv4
INET_UNKNOWN = 0

_AUTH_PROTOCOLS = {
    "md5": usmHMACMD5AuthProtocol, "sha": usmHMACSHAAuthProtocol, "sha224": usmHMAC128SHA224AuthProtocol,
    "sha256": usmHMAC192SHA256AuthProtocol, "sha384": usmHMAC256SHA384AuthProtocol,
    "sha512": usmHMAC384SHA512AuthProtocol,
}
# aes192/aes256 use the key extension most routers implement (Reeder, "AES-192/256 Cisco" in net-snmp).
_PRIV_PROTOCOLS = {
    "des": usmDESPrivProtocol, "3des": usm3DESEDEPrivProtocol, "aes128": usmAesCfb128Protocol,
    "aes192": usmAesCfb192Protocol, "aes256": usmAesCfb256Protocol,
}

# errorIndications that mean the agent refused our v3 identity or keys.
_AUTH_INDICATIONS = (errind.WrongDigest, errind.UnknownUserName, errind.UnknownSecurityName,
                     errind.UnsupportedSecurityLevel, errind.AuthenticationFailure, errind.AuthenticationError,
                     errind.DecryptionError, errind.UnknownCommunityName, errind.UnsupportedAuthProtocol,
                     errind.UnsupportedPrivProtocol)
# PDU error-status values that mean "not for you" rather than "broken" (RFC 3416 §3).
_NO_ACCESS_STATUS = {2: "noSuchName", 6: "noAccess", 16: "authorizationError"}


class SnmpError(Exception):
    """An SNMP read that could not be done; ``code`` is one of SnmpDevice.error's values."""

    def __init__(self, message: str, code: ErrorCode = "protocol") -> None:
        super().__init__(message)
        self.code: ErrorCode = code


# ---------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Credentials:
    """What one target needs to authenticate; the secret fields never appear in repr()."""

    version: Literal["2c", "3"]
    community: str | None = field(default=None, repr=False)
    user: str | None = None
    auth_key: str | None = field(default=None, repr=False)
    priv_key: str | None = field(default=None, repr=False)
    auth_protocol: str | None = None
    priv_protocol: str | None = None

    def secrets(self) -> tuple[str, ...]:
        """The secret values, for scrubbing them out of any text that leaves this module."""
        return tuple(s for s in (self.community, self.auth_key, self.priv_key) if s)


def _read_secret(path: Path, zh: str, en: str, min_len: int = 1) -> str:
    """One secret from a file: one trailing newline stripped; SnmpError if unreadable or unusable."""

    def refuse(zh_why: str, en_why: str) -> SnmpError:
        return SnmpError(f"{zh}文件 {path} {zh_why} / {en} file {path}: {en_why}", "credentials_unreadable")

    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise refuse("无法读取", f"cannot read it ({exc.strerror or type(exc).__name__})") from None
    except ValueError:  # a NUL in the path
        raise refuse("路径无效", "invalid path") from None
    if len(data) > MAX_SECRET_BYTES:
        raise refuse(f"超过 {MAX_SECRET_BYTES} 字节", f"larger than {MAX_SECRET_BYTES} bytes")
    for newline in (b"\r\n", b"\n"):
        if data.endswith(newline):
            data = data[: -len(newline)]
            break
    if not data:
        raise refuse("为空", "empty")
    if b"\n" in data or b"\r" in data:
        raise refuse("包含多行", "holds more than one line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse("不是 UTF-8 文本", "not UTF-8 text") from None
    if len(text) < min_len:
        raise refuse(f"短于 {min_len} 个字符", f"shorter than {min_len} characters")
    return text


def read_credentials(target: SnmpTarget) -> Credentials:
    """The target's community or v3 user and keys, read from the profile's secret files.

    Raises SnmpError (code ``credentials_unreadable``) when a file cannot be
    read, is empty, or holds something that cannot be a key; the message
    names the file, never its content.
    """
    if target.community_file is not None:
        return Credentials(version="2c", community=_read_secret(target.community_file, "团体名", "community"))
    v3 = target.v3
    if v3 is None:
        raise SnmpError("目标没有凭据 / target has no credentials", "credentials_unreadable")
    # RFC 3414 §11.2: pass phrases are at least 8 octets; agents refuse shorter ones.
    auth_key = _read_secret(v3.auth_key_file, "认证密钥", "auth key", min_len=8)
    priv_key = (_read_secret(v3.priv_key_file, "加密密钥", "priv key", min_len=8)
                if v3.priv_key_file is not None else None)
    return Credentials(version="3", user=v3.user, auth_key=auth_key, priv_key=priv_key,
                       auth_protocol=v3.auth_protocol, priv_protocol=v3.priv_protocol if priv_key else None)


def _auth_data(creds: Credentials, slot: int) -> CommunityData | UsmUserData:
    """pysnmp's credentials; ``slot`` numbers the distinct communities of one engine.

    The shared engine maps community <-> securityName both ways: the outgoing community is
    found by securityName, an answer's securityName by its community. So each distinct
    community needs its own index and securityName, and targets with the same community must
    share one (a second name for the same community would never see its answers). The
    numbered name also keeps the community, or a hash of it, out of pysnmp's own tables.
    """
    if creds.version == "2c":
        name = f"cafe-probe-{slot}"
        return CommunityData(name, creds.community, mpModel=1, securityName=name)
    return UsmUserData(creds.user, creds.auth_key, creds.priv_key,
                       authProtocol=_AUTH_PROTOCOLS[creds.auth_protocol or "sha"],
                       privProtocol=_PRIV_PROTOCOLS[creds.priv_protocol] if creds.priv_key else usmNoPrivProtocol)


# ---------------------------------------------------------------------------
# Hostile values -> plain Python (None when the value is not what the MIB says)
# ---------------------------------------------------------------------------

_CONVERSION_ERRORS = (PyAsn1Error, TypeError, ValueError, OverflowError, AttributeError)


def _oid(raw: Any) -> tuple[int, ...] | None:
    if isinstance(raw, (str, bytes)):
        return None
    try:
        oid = tuple(raw)
    except _CONVERSION_ERRORS:
        return None
    if not 0 < len(oid) <= MAX_OID_LEN:
        return None
    if not all(type(arc) is int and 0 <= arc < 2**32 for arc in oid):
        return None
    return oid


def _int(value: Any, lo: int, hi: int) -> int | None:
    """An INTEGER-family value within [lo, hi], else None."""
    if isinstance(value, bool) or isinstance(value, univ.Boolean):
        return None
    if isinstance(value, univ.Integer):
        try:
            if not value.isValue:
                return None
            number = int(value)
        except _CONVERSION_ERRORS:
            return None
    elif type(value) is int:
        number = value
    else:
        return None
    return number if lo <= number <= hi else None


def _octets(value: Any) -> bytes | None:
    if isinstance(value, univ.OctetString):
        try:
            return value.asOctets() if value.isValue else None
        except _CONVERSION_ERRORS:
            return None
    if isinstance(value, bytes):
        return value
    return None


def _clean(text: str) -> str | None:
    text = "".join(ch if ch.isprintable() else "\ufffd" for ch in text.strip().rstrip("\0")[:MAX_TEXT])
    text = text.strip()
    return text or None


def _text(value: Any) -> str | None:
    """A DisplayString: decoded (UTF-8, else GB18030 as Chinese devices send), cut and cleaned."""
    raw = _octets(value)
    if raw is None:
        return None
    raw = raw[: MAX_TEXT * 4]  # enough bytes for MAX_TEXT characters in any of the encodings
    for encoding in ("utf-8", "gb18030"):
        try:
            # Incremental with final=False: a character cut by the slice above is dropped, not an error.
            decoded = codecs.getincrementaldecoder(encoding)().decode(raw, final=False)
        except UnicodeDecodeError:
            continue
        if encoding == "utf-8" or decoded.isprintable():
            return _clean(decoded)
    return _clean(raw.decode("utf-8", errors="replace"))


def _mac(value: Any) -> str | None:
    raw = _octets(value)
    if raw is None or len(raw) != 6 or raw == bytes(6):
        return None
    return mac_str(raw)


def _ipv4(value: Any) -> IPv4Address | None:
    raw = _octets(value)
    return IPv4Address(raw) if raw is not None and len(raw) == 4 else None


def _index_ipv4(arcs: Sequence[int]) -> IPv4Address | None:
    if len(arcs) != 4 or not all(0 <= a <= 255 for a in arcs):
        return None
    return IPv4Address(bytes(arcs))


def _prefix(mask: IPv4Address | None) -> int | None:
    """The prefix length of a contiguous netmask, else None."""
    if mask is None:
        return None
    bits = int(mask)
    inverted = (~bits) & 0xFFFFFFFF
    if inverted & (inverted + 1):  # host part must be 0…01…1
        return None
    return 32 - inverted.bit_length()


def _valid_rows(rows: Iterable[Any]) -> Iterator[tuple[tuple[int, ...], Any]]:
    """The rows that are an (OID, value) pair with a well-formed OID."""
    for row in rows:
        try:
            raw_oid, value = row
        except _CONVERSION_ERRORS:
            continue
        oid = _oid(raw_oid)
        if oid is not None:
            yield oid, value


def _columns(rows: Iterable[Any], entry: tuple[int, ...]) -> dict[int, dict[tuple[int, ...], Any]]:
    """Rows under ``entry`` as {column: {index: value}}; malformed rows skipped, first value wins."""
    out: dict[int, dict[tuple[int, ...], Any]] = {}
    n = len(entry)
    for oid, value in _valid_rows(rows):
        if len(oid) >= n + 2 and oid[:n] == entry:
            out.setdefault(oid[n], {}).setdefault(oid[n + 1:], value)
    return out


# ---------------------------------------------------------------------------
# Pure conversions
# ---------------------------------------------------------------------------

def system_from(rows: Iterable[Row]) -> tuple[str | None, str | None]:
    """(sysDescr, sysName) from the rows of a GET of sysDescr.0 and sysName.0."""
    values: dict[tuple[int, ...], Any] = {}
    for oid, value in _valid_rows(rows):
        if oid in (SYS_DESCR, SYS_NAME):
            values.setdefault(oid, value)
    return _text(values.get(SYS_DESCR)), _text(values.get(SYS_NAME))


_ADMIN = {1: True, 2: False, 3: False}  # up, down, testing
_OPER = {1: True, 2: False, 3: False, 5: False, 6: False, 7: False}  # 4 unknown -> None


def _speed_mbps(high: Any, low: Any) -> int | None:
    """ifHighSpeed (Mb/s) wins; ifSpeed (b/s) only when below its 2³²-1 ceiling (beyond it, unknown)."""
    mbps = _int(high, 0, GAUGE_MAX)
    if mbps is not None:
        return mbps
    bps = _int(low, 0, GAUGE_MAX - 1)
    return round(bps / 1_000_000) if bps is not None else None


def _addresses(ip_rows: Iterable[Row]) -> dict[int, list[IPv4Interface]]:
    table = _columns(ip_rows, IPADDR_ENTRY)
    masks = table.get(3, {})
    out: dict[int, list[IPv4Interface]] = {}
    for index, value in table.get(2, {}).items():
        address = _index_ipv4(index)
        if_index = _int(value, 1, INT32_MAX)
        prefix = _prefix(_ipv4(masks.get(index)))
        if address is None or if_index is None or prefix is None:
            continue
        out.setdefault(if_index, []).append(IPv4Interface((address, prefix)))
    return out


def interfaces_from(if_rows: Iterable[Row], ifx_rows: Iterable[Row] = (),
                    ip_rows: Iterable[Row] = ()) -> list[SnmpInterface]:
    """Interfaces from ifTable rows, joined with ifXTable (ifName, ifHighSpeed) and ipAddrTable.

    Each input is a list of ``(OID tuple, value)`` under that table's entry
    OID. An interface exists when ifTable has a row for a valid ifIndex
    (1..2³¹-1); ifName wins over ifDescr for the name, ifHighSpeed over
    ifSpeed for the speed.
    """
    ift = _columns(if_rows, IF_ENTRY)
    ifx = _columns(ifx_rows, IFX_ENTRY)
    addresses = _addresses(ip_rows)
    indexes = sorted({index[0] for column in ift.values() for index in column
                      if len(index) == 1 and 1 <= index[0] <= INT32_MAX})
    out = []
    for if_index in indexes:
        key = (if_index,)
        descr = _text(ift.get(2, {}).get(key))
        out.append(SnmpInterface(
            index=if_index,
            name=_text(ifx.get(1, {}).get(key)) or descr,
            descr=descr,
            type=_int(ift.get(3, {}).get(key), 1, INT32_MAX),
            admin_up=_ADMIN.get(_int(ift.get(7, {}).get(key), 1, 3)),
            oper_up=_OPER.get(_int(ift.get(8, {}).get(key), 1, 7)),
            speed_mbps=_speed_mbps(ifx.get(15, {}).get(key), ift.get(5, {}).get(key)),
            mac=_mac(ift.get(6, {}).get(key)),
            addresses=addresses.get(if_index, []),
        ))
    return out


def _inet_cidr_index(index: tuple[int, ...]) -> tuple[IPv4Network, IPv4Address | None] | None:
    """Decode inetCidrRouteTable's index: destType.len.dest.pfxLen.policyLen.policy.nhType.len.nextHop.

    Only IPv4 destinations; the next hop is IPv4 or unknown (type 0, length 0).
    """
    if len(index) < 9 or index[0] != INET_IPV4 or index[1] != 4:
        return None
    dest = _index_ipv4(index[2:6])
    pfx_len, policy_len = index[6], index[7]
    rest = index[8 + policy_len:] if policy_len <= MAX_OID_LEN else ()
    if dest is None or pfx_len > 32 or len(rest) < 2:
        return None
    nh_type, nh_len, nh = rest[0], rest[1], rest[2:]
    if nh_type == INET_IPV4 and nh_len == 4 and len(nh) == 4:
        next_hop = _index_ipv4(nh)
        if next_hop is None:
            return None
    elif nh_type == INET_UNKNOWN and nh_len == 0 and not nh:
        next_hop = None
    else:
        return None
    return IPv4Network((dest, pfx_len), strict=False), next_hop


def _ip_cidr_index(index: tuple[int, ...]) -> tuple[IPv4Network, IPv4Address | None] | None:
    """Decode ipCidrRouteTable's index: dest(4).mask(4).tos(1).nextHop(4)."""
    if len(index) != 13:
        return None
    dest, mask, next_hop = _index_ipv4(index[0:4]), _index_ipv4(index[4:8]), _index_ipv4(index[9:13])
    prefix = _prefix(mask)
    if dest is None or prefix is None or next_hop is None:
        return None
    return IPv4Network((dest, prefix), strict=False), next_hop


def _no_gateway(next_hop: IPv4Address | None) -> IPv4Address | None:
    # 0.0.0.0 as next hop means "directly connected", not a gateway.
    return None if next_hop is None or next_hop == IPv4Address(0) else next_hop


def routes_from(table: RouteTable, rows: Iterable[Row]) -> list[SnmpRoute]:
    """IPv4 routes from one routing table's rows (``(OID tuple, value)`` under its entry OID).

    inetCidrRouteTable and ipCidrRouteTable need only their ifIndex column
    (the route is in the index); ipRouteTable needs ipRouteMask and takes
    ipRouteNextHop, ipRouteIfIndex and ipRouteDest (else the index).
    """
    if table == "inetCidrRouteTable":
        return _indexed_routes(table, _columns(rows, INET_CIDR_ENTRY).get(INET_CIDR_IFINDEX, {}), _inet_cidr_index)
    if table == "ipCidrRouteTable":
        return _indexed_routes(table, _columns(rows, IP_CIDR_ENTRY).get(IP_CIDR_IFINDEX, {}), _ip_cidr_index)
    if table == "ipRouteTable":
        return _ip_route_routes(_columns(rows, IP_ROUTE_ENTRY))
    raise SnmpError(f"未知路由表 / unknown route table: {str(table)[:40]!r}")


def _indexed_routes(table: RouteTable, if_indexes: dict[tuple[int, ...], Any], decode) -> list[SnmpRoute]:
    out = []
    for index, value in if_indexes.items():
        decoded = decode(index)
        if decoded is None:
            continue
        destination, next_hop = decoded
        out.append(SnmpRoute(destination=destination, next_hop=_no_gateway(next_hop),
                             if_index=_int(value, 1, INT32_MAX), table=table))
    return out


def _ip_route_routes(columns: dict[int, dict[tuple[int, ...], Any]]) -> list[SnmpRoute]:
    out = []
    for index, mask_value in columns.get(11, {}).items():
        dest = _ipv4(columns.get(1, {}).get(index)) or _index_ipv4(index)
        prefix = _prefix(_ipv4(mask_value))
        if dest is None or prefix is None or _index_ipv4(index) is None:
            continue
        out.append(SnmpRoute(destination=IPv4Network((dest, prefix), strict=False),
                             next_hop=_no_gateway(_ipv4(columns.get(7, {}).get(index))),
                             if_index=_int(columns.get(2, {}).get(index), 1, INT32_MAX), table="ipRouteTable"))
    return out


def default_routes(routes: Iterable[SnmpRoute]) -> list[SnmpRoute]:
    """The routes to 0.0.0.0/0: one per line to the Internet on a router."""
    default = IPv4Network("0.0.0.0/0")
    return [route for route in routes if route.destination == default]


def _index_mac(arcs: Sequence[int]) -> str | None:
    if len(arcs) != 6 or not all(0 <= a <= 255 for a in arcs):
        return None
    return mac_str(bytes(arcs))


def bridge_from(fdb_rows: Iterable[Row], port_rows: Iterable[Row] = (),
                qfdb_rows: Iterable[Row] = ()) -> list[SnmpBridgeEntry]:
    """A switch's learned MACs: dot1dTpFdbTable, else dot1qTpFdbTable; ports mapped to ifIndex
    through dot1dBasePortIfIndex. Entries without a known port (0) are skipped."""
    port_if = {index[0]: _int(value, 1, INT32_MAX)
               for index, value in _columns(port_rows, BASE_PORT_ENTRY).get(BASE_PORT_IFINDEX, {}).items()
               if len(index) == 1}
    fdb = _columns(fdb_rows, FDB_ENTRY)
    entries = [(index, index) for index in fdb.get(2, {})]
    if not entries:
        fdb = _columns(qfdb_rows, QFDB_ENTRY)
        # Q-BRIDGE index is fdbId.MAC; the same MAC may be learned in several VLANs.
        entries = [(index, index[1:]) for index in fdb.get(2, {}) if len(index) == 7]
    out: list[SnmpBridgeEntry] = []
    seen: set[tuple[str, int]] = set()
    for index, mac_arcs in entries:
        mac = _index_mac(mac_arcs)
        port = _int(fdb[2][index], 1, 65535)
        if mac is None or port is None or (mac, port) in seen:
            continue
        seen.add((mac, port))
        out.append(SnmpBridgeEntry(mac=mac, port=port, if_index=port_if.get(port),
                                   status=_int(fdb.get(3, {}).get(index), 1, 5)))
    return out


# ---------------------------------------------------------------------------
# The network side
# ---------------------------------------------------------------------------

def _one_line(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return " ".join(text.split())[:MAX_DETAIL]


class _Session:
    """Reads from one target through the shared engine; raises SnmpError with an error code."""

    def __init__(self, engine: SnmpEngine, auth: CommunityData | UsmUserData, transport: UdpTransportTarget,
                 version: str, timeout: float, retries: int, max_rows: int) -> None:
        self.engine, self.auth, self.transport = engine, auth, transport
        self.version, self.timeout, self.retries, self.max_rows = version, timeout, retries, max_rows
        self.truncated = False

    def _indication(self, indication: Any) -> SnmpError:
        if isinstance(indication, errind.RequestTimedOut):
            tries = self.retries + 1
            if self.version == "2c":
                zh, en = "无应答（团体名错误、访问控制或代理未运行）", "no answer (wrong community, ACL, or agent down)"
            else:
                zh, en = "无应答（加密密钥错误、访问控制或代理未运行）", "no answer (wrong priv key, ACL, or agent down)"
            return SnmpError(f"{zh}：{tries} 次 × {self.timeout:g} 秒 / {en}: {tries} tries × {self.timeout:g} s",
                             "timeout")
        if isinstance(indication, _AUTH_INDICATIONS):
            return SnmpError(f"认证被拒绝 / authentication refused: {indication}", "auth")
        return SnmpError(f"SNMP 错误 / SNMP error: {indication}", "protocol")

    @staticmethod
    def _status(status: Any) -> SnmpError:
        number = _int(status, 0, INT32_MAX)
        if number in _NO_ACCESS_STATUS:
            return SnmpError(f"代理拒绝访问 / access refused by the agent: {_NO_ACCESS_STATUS[number]}", "no_access")
        return SnmpError(f"代理返回错误 / agent error-status: {status}", "protocol")

    async def get(self, *oids: tuple[int, ...]) -> list[Row]:
        """One GET; SnmpError on any error indication or error status."""
        indication, status, _, var_binds = await get_cmd(
            self.engine, self.auth, self.transport, ContextData(),
            *(ObjectType(ObjectIdentity(oid)) for oid in oids), lookupMib=False)
        if indication:
            raise self._indication(indication)
        if status:
            raise self._status(status)
        return [(tuple(name), value) for name, value in var_binds]

    async def walk(self, root: tuple[int, ...], *, required: bool = False) -> list[Row]:
        """All rows under ``root`` by GETBULK, at most ``max_rows`` (then ``truncated`` is set).

        Our own loop rather than pysnmp's bulk_walk_cmd: that one keeps re-sending after a
        timeout (lextudio/pysnmp#66) and walks past the subtree unless told not to. The walk
        stops at the subtree's end, at endOfMibView, and at an OID that does not increase (a
        looping agent). An error status ends an optional table quietly (absent), a required
        one with SnmpError; an error indication (timeout, auth) always raises.
        """
        rows: list[Row] = []
        current = root
        while True:
            indication, status, _, var_binds = await bulk_cmd(
                self.engine, self.auth, self.transport, ContextData(), 0, BULK_REPETITIONS,
                ObjectType(ObjectIdentity(current)), lookupMib=False)
            if indication:
                raise self._indication(indication)
            if status:
                if required:
                    raise self._status(status)
                return rows
            if not var_binds:
                return rows
            for name, value in var_binds:
                oid = _oid(name)
                if (oid is None or isinstance(value, EndOfMibView) or len(oid) <= len(root)
                        or oid[:len(root)] != root or oid <= current):
                    return rows
                if len(rows) >= self.max_rows:
                    self.truncated = True
                    return rows
                rows.append((oid, value))
                current = oid

    async def walk_columns(self, entry: tuple[int, ...], columns: Iterable[int], *,
                           required: bool = False) -> list[Row]:
        """Several columns of one table, each walked on its own (a row cap per column)."""
        rows: list[Row] = []
        for column in columns:
            rows += await self.walk(entry + (column,), required=required)
        return rows


async def _routes(session: _Session) -> list[SnmpRoute]:
    # Only the ipv4(1) destinations of inetCidrRouteTable: the cap then counts IPv4 routes alone.
    rows = await session.walk(INET_CIDR_ENTRY + (INET_CIDR_IFINDEX, INET_IPV4))
    routes = routes_from("inetCidrRouteTable", rows)
    if not routes:
        routes = routes_from("ipCidrRouteTable", await session.walk(IP_CIDR_ENTRY + (IP_CIDR_IFINDEX,)))
    if not routes:
        routes = routes_from("ipRouteTable", await session.walk_columns(IP_ROUTE_ENTRY, IP_ROUTE_COLUMNS))
    return routes


async def _bridge(session: _Session) -> list[SnmpBridgeEntry]:
    fdb = await session.walk_columns(FDB_ENTRY, FDB_COLUMNS)
    qfdb = [] if fdb else await session.walk_columns(QFDB_ENTRY, QFDB_COLUMNS)
    if not fdb and not qfdb:
        return []
    ports = await session.walk(BASE_PORT_ENTRY + (BASE_PORT_IFINDEX,))
    return bridge_from(fdb, ports, qfdb)


async def _read_device(session: _Session, device: dict[str, Any]) -> None:
    """Fill ``device`` (SnmpDevice fields) from the agent; SnmpError on failure."""
    sys_descr, sys_name = system_from(await session.get(SYS_DESCR, SYS_NAME))
    device.update(sys_descr=sys_descr, sys_name=sys_name)
    if sys_descr is None and sys_name is None:
        raise SnmpError("代理的视图不含系统组 / the agent's view hides the system group", "no_access")
    if_rows = await session.walk_columns(IF_ENTRY, IF_COLUMNS, required=True)
    ifx_rows = await session.walk_columns(IFX_ENTRY, IFX_COLUMNS)
    ip_rows = await session.walk_columns(IPADDR_ENTRY, IPADDR_COLUMNS)
    device["interfaces"] = interfaces_from(if_rows, ifx_rows, ip_rows)
    device["routes"] = await _routes(session)
    device["bridge"] = await _bridge(session)
    device["truncated"] = session.truncated


async def _collect_one(engine: SnmpEngine, community_slot: int, target: SnmpTarget,
                       creds: Credentials | SnmpError, lock: asyncio.Lock | None, opts: dict[str, Any]) -> SnmpDevice:
    started = time.monotonic()
    version = "2c" if target.community_file is not None else "3"
    device: dict[str, Any] = dict(address=target.address, role=target.role, version=version, ok=False)
    secrets: tuple[str, ...] = ()
    try:
        if isinstance(creds, SnmpError):
            raise creds
        secrets = creds.secrets()
        transport = await UdpTransportTarget.create((str(target.address), SNMP_PORT),
                                                    timeout=opts["timeout"], retries=opts["retries"])
        session = _Session(engine, _auth_data(creds, community_slot), transport, version, **opts)
        if lock is None:
            await _read_device(session, device)
        else:
            async with lock:
                await _read_device(session, device)
        device["ok"] = True
    except SnmpError as exc:
        device.update(error=exc.code, error_detail=_one_line(str(exc), secrets))
    except OSError as exc:
        device.update(error="network", error_detail=_one_line(f"网络错误 / network error: {exc}", secrets))
    except Exception as exc:  # noqa: BLE001 - pysnmp internals on hostile answers: one device fails, not the run
        device.update(error="protocol",
                      error_detail=_one_line(f"SNMP 处理失败 / SNMP failure: {type(exc).__name__}: {exc}", secrets))
    if not device["ok"]:
        device.update(interfaces=[], routes=[], bridge=[], truncated=False)
    return SnmpDevice(**device, seconds=round(time.monotonic() - started, 3))


def _usm_locks(creds: list[Credentials | SnmpError]) -> list[asyncio.Lock | None]:
    """A lock per v3 user name that appears with different keys among the targets.

    The shared engine holds one USM entry per user name; pysnmp replaces it when another
    target brings other keys, so such targets must not overlap.
    """
    variants: dict[str, set[tuple[Any, ...]]] = {}
    for c in creds:
        if isinstance(c, Credentials) and c.version == "3":
            variants.setdefault(c.user or "", set()).add(
                (c.auth_key, c.priv_key, c.auth_protocol, c.priv_protocol))
    locks = {user: asyncio.Lock() for user, keys in variants.items() if len(keys) > 1}
    return [locks.get(c.user or "") if isinstance(c, Credentials) and c.version == "3" else None
            for c in creds]


def _community_slots(creds: list[Credentials | SnmpError]) -> list[int]:
    """Per target, the number of its community among the distinct ones (see :func:`_auth_data`)."""
    numbers: dict[str, int] = {}
    return [numbers.setdefault(c.community, len(numbers))
            if isinstance(c, Credentials) and c.community is not None else 0 for c in creds]


def _credentials_or_error(target: SnmpTarget) -> Credentials | SnmpError:
    try:
        return read_credentials(target)
    except SnmpError as exc:
        return exc


async def collect_async(targets: list[SnmpTarget], *, timeout: float = 1.0, retries: int = 1,
                        max_rows: int = 5000, concurrency: int = 8) -> list[SnmpDevice]:
    """Read every target; one SnmpDevice per target, in order. Per-target problems never raise.

    ``timeout`` seconds per request, ``retries`` re-sends of an unanswered one (a dead agent
    costs ``timeout × (retries + 1)``), ``max_rows`` rows per table column, at most
    ``concurrency`` targets at once. Sockets are created in the caller's network namespace.
    """
    if timeout <= 0 or retries < 0 or max_rows < 1 or concurrency < 1:
        raise ValueError("timeout > 0, retries >= 0, max_rows >= 1 and concurrency >= 1 are required")
    creds = [_credentials_or_error(t) for t in targets]
    locks = _usm_locks(creds)
    community_slots = _community_slots(creds)
    opts = dict(timeout=timeout, retries=retries, max_rows=max_rows)
    gate = asyncio.Semaphore(concurrency)
    engine = SnmpEngine()  # one per call, i.e. per event loop: every target shares it (DESIGN.md §9)

    async def one(k: int) -> SnmpDevice:
        async with gate:
            return await _collect_one(engine, community_slots[k], targets[k], creds[k], locks[k], opts)

    try:
        return list(await asyncio.gather(*(one(k) for k in range(len(targets)))))
    finally:
        engine.close_dispatcher()


def collect(targets: list[SnmpTarget], **kw: Any) -> list[SnmpDevice]:
    """:func:`collect_async` in its own event loop (the caller must not be inside one)."""
    return asyncio.run(collect_async(targets, **kw))
