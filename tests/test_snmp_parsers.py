"""SNMP answers to models: exact cases, and fuzzing with every value type an agent could send.

No network: these are the pure functions of probe/net/snmp.py, plus reading
the credentials from the profile's secret files.
"""

from __future__ import annotations

import string
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.type import univ
from pysnmp.proto import rfc1902
from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance, NoSuchObject

from probe.net import snmp
from probe.net.snmp import (
    BASE_PORT_ENTRY,
    FDB_ENTRY,
    IF_ENTRY,
    IFX_ENTRY,
    INET_CIDR_ENTRY,
    IP_CIDR_ENTRY,
    IP_ROUTE_ENTRY,
    IPADDR_ENTRY,
    QFDB_ENTRY,
    SYS_DESCR,
    SYS_NAME,
    SnmpError,
)
from probe.observations import SnmpBridgeEntry, SnmpInterface, SnmpRoute
from probe.profile import AuthProtocol, PrivProtocol, parse_profile

# --------------------------------------------------------------------------
# Exact cases
# --------------------------------------------------------------------------


def ip(text: str) -> rfc1902.IpAddress:
    return rfc1902.IpAddress(text)


def if_rows(index: int, descr: bytes = b"eth0", speed: int = 100_000_000, mac: bytes = bytes.fromhex("02aabbccddee"),
            if_type: int = 6, admin: int = 1, oper: int = 1) -> list:
    return [(IF_ENTRY + (2, index), rfc1902.OctetString(descr)),
            (IF_ENTRY + (3, index), rfc1902.Integer(if_type)),
            (IF_ENTRY + (5, index), rfc1902.Gauge32(speed)),
            (IF_ENTRY + (6, index), rfc1902.OctetString(mac)),
            (IF_ENTRY + (7, index), rfc1902.Integer(admin)),
            (IF_ENTRY + (8, index), rfc1902.Integer(oper))]


def test_ifhighspeed_wins_over_ifspeed_and_ifname_over_ifdescr():
    ifx = [(IFX_ENTRY + (1, 3), rfc1902.OctetString(b"GigabitEthernet0/1")),
           (IFX_ENTRY + (15, 3), rfc1902.Gauge32(1000))]
    (iface,) = snmp.interfaces_from(if_rows(3, descr=b"Intel PRO/1000", speed=100_000_000), ifx)
    assert iface.speed_mbps == 1000 and iface.name == "GigabitEthernet0/1" and iface.descr == "Intel PRO/1000"
    assert (iface.index, iface.type, iface.admin_up, iface.oper_up, iface.mac) == (3, 6, True, True,
                                                                                    "02:aa:bb:cc:dd:ee")


def test_without_ifxtable_the_name_is_ifdescr_and_the_speed_ifspeed():
    (iface,) = snmp.interfaces_from(if_rows(1, descr=b"eth0", speed=1_544_000))
    assert iface.name == iface.descr == "eth0" and iface.speed_mbps == 2  # 1.544 Mb/s rounds to 2
    (fast,) = snmp.interfaces_from(if_rows(1, speed=2**32 - 1))  # pinned at the ceiling: unknown
    assert fast.speed_mbps is None


def test_empty_ifname_falls_back_and_statuses_map():
    ifx = [(IFX_ENTRY + (1, 1), rfc1902.OctetString(b""))]
    rows = if_rows(1, admin=2, oper=7) + if_rows(2, admin=1, oper=4) + if_rows(3, admin=9, oper=0)
    one, two, three = snmp.interfaces_from(rows, ifx)
    assert one.name == "eth0" and (one.admin_up, one.oper_up) == (False, False)  # down, lowerLayerDown
    assert (two.admin_up, two.oper_up) == (True, None)  # oper unknown(4) is not a "no"
    assert (three.admin_up, three.oper_up) == (None, None)  # out of range


def test_addresses_join_by_ifindex_and_a_broken_mask_is_dropped():
    addr = [(IPADDR_ENTRY + (2, 198, 18, 10, 1), rfc1902.Integer(2)),
            (IPADDR_ENTRY + (3, 198, 18, 10, 1), ip("255.255.255.0")),
            (IPADDR_ENTRY + (2, 198, 18, 11, 1), rfc1902.Integer(2)),
            (IPADDR_ENTRY + (3, 198, 18, 11, 1), ip("255.0.255.0")),  # not contiguous
            (IPADDR_ENTRY + (2, 10, 0, 0, 1), rfc1902.Integer(99)),  # no such interface
            (IPADDR_ENTRY + (3, 10, 0, 0, 1), ip("255.0.0.0"))]
    (iface,) = snmp.interfaces_from(if_rows(2), (), addr)
    assert iface.addresses == [IPv4Interface("198.18.10.1/24")]


def inet_row(index: tuple[int, ...], if_index: int = 3) -> tuple:
    return (INET_CIDR_ENTRY + (7,) + index, rfc1902.Integer(if_index))


DEFAULT_VIA_ISP = (1, 4, 0, 0, 0, 0, 0, 2, 0, 0, 1, 4, 203, 0, 113, 1)
CONNECTED = (1, 4, 198, 18, 10, 0, 24, 3, 0, 0, 2, 1, 4, 0, 0, 0, 0)  # net-snmp puts the ifIndex in the policy


def test_inetcidrroutetable_index_decoding():
    routes = snmp.routes_from("inetCidrRouteTable", [
        inet_row(DEFAULT_VIA_ISP, 3),
        inet_row(CONNECTED, 2),
        inet_row((1, 4, 10, 1, 0, 0, 16, 0, 0, 0), 5),  # no policy, next hop of unknown type
        inet_row((2, 16) + (0,) * 16 + (0, 2, 0, 0, 2, 16) + (0,) * 16, 1),  # IPv6: not ours
        inet_row(DEFAULT_VIA_ISP + (7,), 3),  # trailing arcs
        inet_row((1, 4, 0, 0, 0, 0, 33, 2, 0, 0, 1, 4, 1, 2, 3, 4), 3),  # prefix length 33
        inet_row((1, 4, 0, 0, 0, 0, 0, 2, 0, 0, 1, 4, 1, 2, 300, 4), 3),  # arc > 255
        inet_row((1, 4, 0, 0, 0, 0, 0, 2, 0, 0, 1, 4, 1, 2, 3), 3),  # next hop one arc short
        inet_row((1, 4, 0, 0, 0, 0, 0, 200, 0), 3),  # policy longer than the index
    ])
    assert routes == [
        SnmpRoute(destination=IPv4Network("0.0.0.0/0"), next_hop=IPv4Address("203.0.113.1"), if_index=3,
                  table="inetCidrRouteTable"),
        SnmpRoute(destination=IPv4Network("198.18.10.0/24"), next_hop=None, if_index=2, table="inetCidrRouteTable"),
        SnmpRoute(destination=IPv4Network("10.1.0.0/16"), next_hop=None, if_index=5, table="inetCidrRouteTable"),
    ]


def test_default_routes_are_exactly_0_0_0_0_slash_0():
    routes = snmp.routes_from("inetCidrRouteTable", [
        inet_row(DEFAULT_VIA_ISP, 3),
        inet_row((1, 4, 0, 0, 0, 0, 0, 2, 0, 0, 1, 4, 198, 51, 100, 1), 4),
        inet_row((1, 4, 0, 0, 0, 0, 8, 2, 0, 0, 1, 4, 198, 51, 100, 1), 4),  # 0.0.0.0/8 is not a default
        inet_row((1, 4, 0, 0, 0, 0, 1, 2, 0, 0, 1, 4, 198, 51, 100, 1), 4),  # nor is 0.0.0.0/1
        inet_row(CONNECTED, 2),
    ])
    defaults = snmp.default_routes(routes)
    assert [(str(r.next_hop), r.if_index) for r in defaults] == [("203.0.113.1", 3), ("198.51.100.1", 4)]


def test_ipcidrroutetable_and_iproutetable():
    cidr = snmp.routes_from("ipCidrRouteTable", [
        (IP_CIDR_ENTRY + (5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 203, 0, 113, 1), rfc1902.Integer(3)),
        (IP_CIDR_ENTRY + (5, 198, 18, 10, 0, 255, 255, 255, 0, 0, 0, 0, 0, 0), rfc1902.Integer(2)),
        (IP_CIDR_ENTRY + (5, 10, 0, 0, 0, 255, 0, 255, 0, 0, 1, 1, 1, 1), rfc1902.Integer(2)),  # bad mask
        (IP_CIDR_ENTRY + (5, 10, 0, 0, 0, 255, 0, 0, 0, 0, 1, 1, 1), rfc1902.Integer(2)),  # 12 arcs
    ])
    assert [(str(r.destination), r.next_hop, r.if_index) for r in cidr] == [
        ("0.0.0.0/0", IPv4Address("203.0.113.1"), 3), ("198.18.10.0/24", None, 2)]
    old = snmp.routes_from("ipRouteTable", [
        (IP_ROUTE_ENTRY + (1, 0, 0, 0, 0), ip("0.0.0.0")),
        (IP_ROUTE_ENTRY + (1, 198, 18, 10, 0), ip("198.18.10.0")),
        (IP_ROUTE_ENTRY + (2, 0, 0, 0, 0), rfc1902.Integer(3)),
        (IP_ROUTE_ENTRY + (2, 198, 18, 10, 0), rfc1902.Integer(2)),
        (IP_ROUTE_ENTRY + (7, 0, 0, 0, 0), ip("203.0.113.1")),
        (IP_ROUTE_ENTRY + (7, 198, 18, 10, 0), ip("0.0.0.0")),
        (IP_ROUTE_ENTRY + (11, 0, 0, 0, 0), ip("0.0.0.0")),
        (IP_ROUTE_ENTRY + (11, 198, 18, 10, 0), ip("255.255.255.0")),
        (IP_ROUTE_ENTRY + (2, 10, 0, 0, 0), rfc1902.Integer(2)),  # no mask: no route
    ])
    assert old == [
        SnmpRoute(destination=IPv4Network("0.0.0.0/0"), next_hop=IPv4Address("203.0.113.1"), if_index=3,
                  table="ipRouteTable"),
        SnmpRoute(destination=IPv4Network("198.18.10.0/24"), next_hop=None, if_index=2, table="ipRouteTable"),
    ]


def test_unknown_route_table_is_an_snmperror():
    with pytest.raises(SnmpError):
        snmp.routes_from("bgpTable", [])  # type: ignore[arg-type]


MAC_A = (0x02, 0, 0, 0, 0, 0x0A)
MAC_B = (0x02, 0, 0, 0, 0, 0x0B)


def test_bridge_fdb_with_port_to_ifindex():
    fdb = [(FDB_ENTRY + (2,) + MAC_A, rfc1902.Integer(1)), (FDB_ENTRY + (3,) + MAC_A, rfc1902.Integer(3)),
           (FDB_ENTRY + (2,) + MAC_B, rfc1902.Integer(0)),  # port not learned: skipped
           (FDB_ENTRY + (2, 1, 2, 3), rfc1902.Integer(2))]  # index is not a MAC
    ports = [(BASE_PORT_ENTRY + (2, 1), rfc1902.Integer(10101))]
    assert snmp.bridge_from(fdb, ports) == [SnmpBridgeEntry(mac="02:00:00:00:00:0a", port=1, if_index=10101, status=3)]


def test_bridge_falls_back_to_q_bridge_and_dedups_vlans():
    q = [(QFDB_ENTRY + (2, 1) + MAC_A, rfc1902.Integer(7)), (QFDB_ENTRY + (2, 20) + MAC_A, rfc1902.Integer(7)),
         (QFDB_ENTRY + (3, 1) + MAC_A, rfc1902.Integer(3)), (QFDB_ENTRY + (2, 20) + MAC_B, rfc1902.Integer(8))]
    assert snmp.bridge_from([], [], q) == [
        SnmpBridgeEntry(mac="02:00:00:00:00:0a", port=7, if_index=None, status=3),
        SnmpBridgeEntry(mac="02:00:00:00:00:0b", port=8, if_index=None, status=None)]
    assert snmp.bridge_from([], [], []) == []


def test_system_text_is_cleaned_cut_and_decoded():
    gbk = "星际网咖路由器".encode("gb18030")
    descr, name = snmp.system_from([(SYS_DESCR, rfc1902.OctetString(b"Linux\x00\x07 router" + b"x" * 600)),
                                    (SYS_NAME, rfc1902.OctetString(gbk))])
    assert descr.startswith("Linux") and len(descr) == snmp.MAX_TEXT and descr.isprintable()
    assert name == "星际网咖路由器"
    assert snmp.system_from([(SYS_DESCR, NoSuchObject()), (SYS_NAME, rfc1902.Integer(5))]) == (None, None)


# --------------------------------------------------------------------------
# Fuzzing: random OIDs and values of every type -> a valid model or SnmpError
# --------------------------------------------------------------------------

ENTRIES = [IF_ENTRY, IFX_ENTRY, IPADDR_ENTRY, INET_CIDR_ENTRY, IP_CIDR_ENTRY, IP_ROUTE_ENTRY, FDB_ENTRY,
           BASE_PORT_ENTRY, QFDB_ENTRY, SYS_DESCR[:-1]]

arcs = st.integers(min_value=0, max_value=300) | st.integers(min_value=0, max_value=2**32 + 5)
raw_bytes = st.binary(max_size=600)

values = st.one_of(
    raw_bytes.map(rfc1902.OctetString),
    st.binary(min_size=4, max_size=4).map(rfc1902.IpAddress),
    st.integers(-2**31, 2**31 - 1).map(rfc1902.Integer32),
    st.integers(-2**31, 2**31 - 1).map(rfc1902.Integer),
    st.integers(0, 2**32 - 1).map(rfc1902.Gauge32),
    st.integers(0, 2**32 - 1).map(rfc1902.Counter32),
    st.integers(0, 2**32 - 1).map(rfc1902.Unsigned32),
    st.integers(0, 2**32 - 1).map(rfc1902.TimeTicks),
    st.integers(0, 2**64 - 1).map(rfc1902.Counter64),
    st.lists(st.integers(0, 2**32 - 1), min_size=2, max_size=12).map(
        lambda a: rfc1902.ObjectIdentifier((1, 3) + tuple(a))),
    raw_bytes.map(rfc1902.Opaque),
    # Factories, not objects: schema objects (no value) cannot even be hashed by hypothesis.
    st.sampled_from([lambda: rfc1902.Null(""), lambda: NoSuchObject(""), lambda: NoSuchInstance(""),
                     lambda: EndOfMibView(""), lambda: univ.Boolean(True), lambda: univ.Real(1.5),
                     rfc1902.Integer32, rfc1902.OctetString, rfc1902.IpAddress, rfc1902.ObjectIdentifier,
                     rfc1902.Gauge32]).map(lambda make: make()),
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.binary(max_size=8)),
)

oids = st.one_of(
    st.builds(lambda e, col, idx: e + (col,) + tuple(idx), st.sampled_from(ENTRIES), st.integers(0, 20),
              st.lists(arcs, max_size=24)),
    st.lists(arcs, max_size=40).map(tuple),
    st.sampled_from([SYS_DESCR, SYS_NAME, "1.3.6.1.2.1.1.5.0", None, (), (1, -3, 6), (1.5, 2), [1, 3, 6]]),
)

rows = st.lists(st.one_of(st.tuples(oids, values), st.tuples(oids), st.integers(), st.none()), max_size=40)

# Well-formed indexes with a value of the column's own type three times in four reach the deepest
# branches; small index ranges make the columns of one row meet.
octet = st.integers(0, 255) | arcs
few = st.integers(0, 3).flatmap(lambda k: st.integers(1, 3) if k else arcs)
address = st.integers(0, 3).flatmap(
    lambda k: st.sampled_from([(198, 18, 10, 1), (0, 0, 0, 0)]) if k else st.tuples(octet, octet, octet, octet))
mac = st.sampled_from([(2, 0, 0, 0, 0, 10), (2, 0, 0, 0, 0, 11)]) | st.lists(octet, min_size=5, max_size=7).map(tuple)
mask_text = st.sampled_from(["255.255.255.0", "0.0.0.0", "255.255.255.255", "255.0.255.0", "128.0.0.0"])
small_int = st.integers(-1, 9).map(rfc1902.Integer)
gauge = st.integers(0, 2**32 - 1).map(rfc1902.Gauge32)
ip_value = (mask_text | st.sampled_from(["203.0.113.1", "0.0.0.0"])).map(rfc1902.IpAddress) | st.binary(
    min_size=4, max_size=4).map(rfc1902.IpAddress)
text_value = st.text(max_size=300).map(lambda t: rfc1902.OctetString(t.encode("utf-8", "surrogatepass")))
GOOD = {  # (entry, column) -> the value type the MIB gives that column
    (IF_ENTRY, 2): text_value, (IF_ENTRY, 3): small_int, (IF_ENTRY, 5): gauge,
    (IF_ENTRY, 6): (st.binary(min_size=6, max_size=6) | st.binary(max_size=8)).map(rfc1902.OctetString), (IF_ENTRY, 7): small_int,
    (IF_ENTRY, 8): small_int, (IFX_ENTRY, 1): text_value, (IFX_ENTRY, 15): gauge,
    (IPADDR_ENTRY, 2): small_int, (IPADDR_ENTRY, 3): ip_value, (INET_CIDR_ENTRY, 7): small_int,
    (IP_CIDR_ENTRY, 5): small_int, (IP_ROUTE_ENTRY, 1): ip_value, (IP_ROUTE_ENTRY, 2): small_int,
    (IP_ROUTE_ENTRY, 7): ip_value, (IP_ROUTE_ENTRY, 11): ip_value, (FDB_ENTRY, 2): small_int,
    (FDB_ENTRY, 3): small_int, (QFDB_ENTRY, 2): small_int, (QFDB_ENTRY, 3): small_int,
    (BASE_PORT_ENTRY, 2): small_int,
}
good_address = st.sampled_from([(0, 0, 0, 0), (203, 0, 113, 1)]) | st.tuples(*[st.integers(0, 255)] * 4)
coherent_inet = st.builds(
    lambda d, p, pol, nh: (1, 4, *d, p, len(pol), *pol, *((1, 4, *nh) if nh else (0, 0))),
    good_address, st.integers(0, 40), st.lists(st.integers(0, 9), max_size=3), st.none() | good_address)
random_inet = st.builds(
    lambda dt, dl, d, p, pl, pol, nt, nl, nh: (dt, dl, *d, p, pl, *pol, nt, nl, *nh),
    st.sampled_from([1, 1, 2, 0, 3]), st.sampled_from([4, 4, 16, 0]), address, st.integers(0, 40),
    st.integers(0, 4), st.lists(octet, max_size=4), st.sampled_from([1, 1, 0, 2]), st.sampled_from([4, 4, 0, 16]),
    address | st.lists(octet, max_size=5).map(tuple))
inet_index = coherent_inet | random_inet
INDEXES = {  # entry -> its index, as arcs
    IF_ENTRY: few.map(lambda i: (i,)), IFX_ENTRY: few.map(lambda i: (i,)), IPADDR_ENTRY: address,
    INET_CIDR_ENTRY: inet_index,
    IP_CIDR_ENTRY: st.builds(lambda d, m, t, n: (*d, *m, t, *n), address,
                             mask_text.map(lambda m: tuple(IPv4Address(m).packed)), octet, address),
    IP_ROUTE_ENTRY: address, FDB_ENTRY: mac, QFDB_ENTRY: st.builds(lambda f, m: (f, *m), few, mac),
    BASE_PORT_ENTRY: few.map(lambda p: (p,)),
}


def _column_rows(entry: tuple[int, ...], column: int) -> st.SearchStrategy:
    good = GOOD[(entry, column)]
    # flatmap, not one_of(good, good, good, values): one_of flattens and dedups, and good would drown.
    return st.tuples(INDEXES[entry].map(lambda index: entry + (column,) + tuple(index)),
                     st.integers(0, 3).flatmap(lambda k: good if k else values))


structured = st.one_of(*(_column_rows(entry, column) for entry, column in GOOD))
mixed = st.lists(st.one_of(structured, structured, st.tuples(oids, values)), max_size=60)


def table(entry: tuple[int, ...]) -> st.SearchStrategy:
    """Rows of one table's columns, with a stray row of anything now and then."""
    columns = [_column_rows(entry, column) for e, column in GOOD if e == entry]
    return st.lists(st.one_of(*columns, *columns, st.tuples(oids, values)), max_size=40)


ROUTE_TABLES = {"inetCidrRouteTable": INET_CIDR_ENTRY, "ipCidrRouteTable": IP_CIDR_ENTRY,
                "ipRouteTable": IP_ROUTE_ENTRY}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _unless_snmp_error(call):
    """The call's result; SnmpError (the one exception allowed) counts as an empty result."""
    try:
        return call()
    except SnmpError:
        return []


def _check_text(value: str | None) -> None:
    assert value is None or (0 < len(value) <= snmp.MAX_TEXT and value.isprintable() and value == value.strip())


def _check_interfaces(result: list) -> None:
    indexes = [i.index for i in result]
    assert indexes == sorted(set(indexes))
    for iface in result:
        assert isinstance(iface, SnmpInterface) and 1 <= iface.index <= 2**31 - 1
        for text in (iface.name, iface.descr):
            _check_text(text)
        assert iface.speed_mbps is None or 0 <= iface.speed_mbps < 2**32
        assert iface.mac is None or len(iface.mac) == 17
        SnmpInterface.model_validate(iface.model_dump())


@FUZZ
@given(table(IF_ENTRY), table(IFX_ENTRY), table(IPADDR_ENTRY))
def test_fuzz_interfaces(a, b, c):
    _check_interfaces(_unless_snmp_error(lambda: snmp.interfaces_from(a, b, c)))


@FUZZ
@given(st.sampled_from(sorted(ROUTE_TABLES)).flatmap(lambda name: st.tuples(st.just(name),
                                                                             table(ROUTE_TABLES[name]))))
def test_fuzz_routes(case):
    name, data = case
    result = _unless_snmp_error(lambda: snmp.routes_from(name, data))
    for route in result:
        assert isinstance(route, SnmpRoute) and route.table == name
        assert route.if_index is None or route.if_index >= 1
        assert route.next_hop != IPv4Address(0)
        SnmpRoute.model_validate(route.model_dump())
    assert all(r.destination.prefixlen == 0 for r in snmp.default_routes(result))


@FUZZ
@given(table(FDB_ENTRY), table(BASE_PORT_ENTRY), table(QFDB_ENTRY))
def test_fuzz_bridge(a, b, c):
    result = _unless_snmp_error(lambda: snmp.bridge_from(a, b, c))
    assert len({(e.mac, e.port) for e in result}) == len(result)
    for entry in result:
        assert isinstance(entry, SnmpBridgeEntry) and 1 <= entry.port <= 65535
        assert entry.status is None or 1 <= entry.status <= 5


@FUZZ
@given(rows | mixed, rows | mixed)
def test_fuzz_anything_at_all(a, b):
    for call in (lambda: snmp.interfaces_from(a, b, a), lambda: snmp.routes_from("ipRouteTable", a),
                 lambda: snmp.routes_from("inetCidrRouteTable", b), lambda: snmp.bridge_from(a, b, a),
                 lambda: snmp.system_from(a)):
        _unless_snmp_error(call)


@FUZZ
@given(values, values)
def test_fuzz_system(descr, name):
    got = snmp.system_from([(SYS_DESCR, descr), (SYS_NAME, name)])
    for text in got:
        _check_text(text)


# --------------------------------------------------------------------------
# Credentials from the profile's secret files
# --------------------------------------------------------------------------

PROFILE = """
venue: {id: T-1, name: t, licensed_terminals: 1}
network: {subnets: [198.18.10.0/24]}
terminals: {first_address: 198.18.10.10}
servers:
  snmp:
    - {address: 198.18.10.1, community_file: s/community}
    - address: 198.18.10.2
      v3: {user: probe, auth_key_file: s/auth, priv_key_file: s/priv, auth_protocol: SHA-256, priv_protocol: AES}
    - address: 198.18.10.3
      v3: {user: probe, auth_key_file: s/auth}
"""


def _staged(tmp_path: Path, files: dict[str, bytes]):
    (tmp_path / "s").mkdir()
    for name, data in files.items():
        (tmp_path / "s" / name).write_bytes(data)
        (tmp_path / "s" / name).chmod(0o600)
    return parse_profile(PROFILE, tmp_path).servers.snmp


def test_credentials_strip_one_newline_and_hide_in_repr(tmp_path):
    community, v3, v3_nopriv = _staged(tmp_path, {"community": b"pub lic\r\n", "auth": b"authpass1\n\n",
                                                  "priv": b"privpass1"})
    with pytest.raises(SnmpError) as caught:
        snmp.read_credentials(v3)  # "authpass1\n" after one newline: two lines is a mistake
    assert caught.value.code == "credentials_unreadable" and "authpass1" not in str(caught.value)
    (tmp_path / "s" / "auth").write_bytes(b"authpass1\n")
    c2 = snmp.read_credentials(community)
    c3 = snmp.read_credentials(v3)
    assert c2.version == "2c" and c2.community == "pub lic"
    assert (c3.version, c3.user, c3.auth_key, c3.priv_key, c3.auth_protocol, c3.priv_protocol) == (
        "3", "probe", "authpass1", "privpass1", "sha256", "aes128")
    assert snmp.read_credentials(v3_nopriv).priv_key is None
    for creds in (c2, c3):
        assert not any(secret in repr(creds) or secret in str(creds) for secret in creds.secrets())


@pytest.mark.parametrize("content, why", [(b"", "empty"), (b"\n", "empty"), (b"short\n", "shorter than 8"),
                                          (b"\xff\xfe\xfa-not-utf8", "not UTF-8"),
                                          (b"x" * 5000, "larger than")])
def test_bad_secret_files_are_credentials_unreadable(tmp_path, content, why):
    _, v3, _ = _staged(tmp_path, {"community": b"public\n", "auth": content or b"placeholder", "priv": b"privpass1"})
    (tmp_path / "s" / "auth").write_bytes(content)
    with pytest.raises(SnmpError) as caught:
        snmp.read_credentials(v3)
    assert caught.value.code == "credentials_unreadable" and why in str(caught.value)
    assert str(tmp_path / "s" / "auth") in str(caught.value)


def test_a_vanished_file_is_credentials_unreadable(tmp_path):
    community, _, _ = _staged(tmp_path, {"community": b"public\n", "auth": b"authpass1", "priv": b"privpass1"})
    (tmp_path / "s" / "community").unlink()
    with pytest.raises(SnmpError, match="cannot read") as caught:
        snmp.read_credentials(community)
    assert caught.value.code == "credentials_unreadable"


def test_every_profile_protocol_has_a_pysnmp_protocol():
    assert set(snmp._AUTH_PROTOCOLS) == set(get_args(get_args(AuthProtocol)[0]))
    assert set(snmp._PRIV_PROTOCOLS) == set(get_args(get_args(PrivProtocol)[0]))
    creds = snmp.Credentials(version="3", user="u", auth_key="a" * 8, priv_key="p" * 8, auth_protocol="sha512",
                             priv_protocol="aes256")
    auth = snmp._auth_data(creds, 0)
    assert auth.authentication_protocol == snmp._AUTH_PROTOCOLS["sha512"]
    assert auth.privacy_protocol == snmp._PRIV_PROTOCOLS["aes256"] and auth.security_level == "authPriv"
    assert all(ch in string.printable for ch in repr(auth)) and "a" * 8 not in repr(auth)
