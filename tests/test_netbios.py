"""NetBIOS node-status codec: exact bytes, round trips, and hostile input.

The expected byte strings are written by hand from RFC 1002 §4.2.17/18, not
produced by the code under test, so a shared mistake cannot hide.
"""

from __future__ import annotations

import re
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.netbios import NBNSHeader, NBNSNodeStatusResponse, NBNSQueryResponse

from probe.net.netbios import (
    MAX_PAYLOAD,
    NetbiosParseError,
    NodeStatus,
    build_answer,
    build_query,
    machine_name,
    parse_answer,
)
from probe.observations import NetbiosName

# "*" (0x2A -> "CK") and 15 NULs (the 14 padding bytes and suffix 0x00 -> "AA" each).
ENCODED_WILDCARD = "20 434b" + " 4141" * 15 + " 00"

QUERY_HEX = (
    "1234"  # NAME_TRN_ID
    " 0000"  # request, opcode query, no flags (unicast, as nbtstat -A sends it)
    " 0001 0000 0000 0000"  # QDCOUNT 1, AN/NS/AR 0
    + " " + ENCODED_WILDCARD
    + " 0021 0001"  # QUESTION_TYPE NBSTAT, QUESTION_CLASS IN
)

ZERO_COUNTERS = " 00" * 40  # the 40 statistics bytes after UNIT_ID; Windows sends zeros

# What a Windows 10 terminal named WB-PC017 in WORKGROUP answers to nbtstat -A.
WINDOWS_ANSWER_HEX = (
    "5c3a 8400"  # NAME_TRN_ID, flags: response, authoritative
    " 0000 0001 0000 0000"  # QDCOUNT 0, ANCOUNT 1
    + " " + ENCODED_WILDCARD  # RR_NAME: the wildcard, fully encoded
    + " 0021 0001 00000000"  # RR_TYPE NBSTAT, RR_CLASS IN, TTL 0
    " 0077"  # RDLENGTH 119 = 1 + 4 * 18 + 46
    " 04"  # NUM_NAMES
    " 57422d5043303137 20202020202020 00 0400"  # "WB-PC017"  <00> unique, active
    " 574f524b47524f5550 202020202020 00 8400"  # "WORKGROUP" <00> group, active
    " 57422d5043303137 20202020202020 20 0400"  # "WB-PC017"  <20> unique, active
    " 574f524b47524f5550 202020202020 1e 8400"  # "WORKGROUP" <1e> group, active
    " 001e683a5cf1" + ZERO_COUNTERS  # UNIT_ID (adapter MAC), counters
)

# A stack that echoes the question and points back to it (0xC00C) in RR_NAME,
# with a GBK computer name "网吧-001" and NUL-padded names.
POINTER_ANSWER_HEX = (
    "0007 8400"
    " 0001 0001 0000 0000"  # QDCOUNT 1, ANCOUNT 1
    + " " + ENCODED_WILDCARD + " 0021 0001"  # the echoed question
    + " c00c"  # RR_NAME: pointer to offset 12
    " 0021 0001 00000000"
    " 0049"  # RDLENGTH 73 = 1 + 2 * 18 + 36 (short statistics, still holds UNIT_ID)
    " 02"
    " cdf8b0c9 2d303031 00000000000000 00 0400"  # "网吧-001" <00> unique
    " 574f524b47524f5550 000000000000 00 8400"  # "WORKGROUP" <00> group
    " 0023 aabbccdd" + " 00" * 30
)


def _names(*entries: tuple[str, int, bool]) -> list[NetbiosName]:
    return [NetbiosName(name=n, suffix=s, group=g) for n, s, g in entries]


def _valid() -> bytes:
    return build_answer(
        0xBEEF,
        _names(("WB-001", 0x00, False), ("WORKGROUP", 0x00, True), ("网吧-001", 0x20, False)),
        "00:1e:68:3a:5c:f1",
    )


# ---- building -------------------------------------------------------------


def test_query_bytes_exact():
    assert build_query(0x1234) == bytes.fromhex(QUERY_HEX)
    assert len(build_query(0)) == 50


@pytest.mark.parametrize("bad", [-1, 0x10000])
def test_query_rejects_transaction_id_out_of_range(bad):
    with pytest.raises(ValueError):
        build_query(bad)


def test_build_answer_matches_hand_written_windows_answer():
    names = _names(("WB-PC017", 0, False), ("WORKGROUP", 0, True), ("WB-PC017", 0x20, False),
                   ("WORKGROUP", 0x1E, True))
    assert build_answer(0x5C3A, names, "00:1E:68:3A:5C:F1") == bytes.fromhex(WINDOWS_ANSWER_HEX)


def test_build_answer_is_read_by_scapys_own_dissector():
    # Interop: scapy's layer reads our 46-byte statistics (it expects 52, and
    # simply gets a shorter STATISTICS field).
    packet = NBNSHeader(_valid())
    answer = packet[NBNSNodeStatusResponse]
    assert answer.NUM_NAMES == 3
    assert answer.RDLENGTH == 1 + 3 * 18 + 46
    assert answer.MAC_ADDRESS == "00:1e:68:3a:5c:f1"
    assert [e.NETBIOS_NAME.rstrip() for e in answer.NODE_NAME][0] == b"WB-001"


@pytest.mark.parametrize(
    ("names", "mac"),
    [
        (_names(("A" * 16, 0, False)), "00:11:22:33:44:55"),
        (_names(("网吧网吧网吧网吧", 0, False)), "00:11:22:33:44:55"),  # 16 GBK bytes
        (_names(("", 0, False)), "00:11:22:33:44:55"),
        (_names(("BAD\x07", 0, False)), "00:11:22:33:44:55"),
        (_names(("😀", 0, False)), "00:11:22:33:44:55"),  # no GBK encoding
        (_names(("PC", 256, False)), "00:11:22:33:44:55"),
        (_names(("PC", 0, False)), "0011.2233.4455"),
        (_names(*[("PC", 0, False)] * 80), "00:11:22:33:44:55"),  # over MAX_PAYLOAD
    ],
)
def test_build_answer_refuses_what_no_host_sends(names, mac):
    with pytest.raises(ValueError):
        build_answer(1, names, mac)


# ---- parsing valid answers ------------------------------------------------


def test_round_trip():
    status = parse_answer(_valid())
    assert status == NodeStatus(
        transaction_id=0xBEEF,
        names=_names(("WB-001", 0, False), ("WORKGROUP", 0, True), ("网吧-001", 0x20, False)),
        unit_id="00:1e:68:3a:5c:f1",
    )


def test_round_trip_msbrowse_and_empty_table():
    names = _names(("WORKGROUP", 0x1D, False), ("__MSBROWSE__", 0x01, True))
    payload = build_answer(9, names, "02:00:00:00:00:01")
    assert b"\x01\x02__MSBROWSE__\x02\x01" in payload
    assert parse_answer(payload).names == names
    empty = parse_answer(build_answer(9, [], "02:00:00:00:00:01"))
    assert empty.names == [] and empty.unit_id == "02:00:00:00:00:01"


@settings(max_examples=200, deadline=None)
@given(
    tid=st.integers(0, 0xFFFF),
    entries=st.lists(
        st.tuples(
            st.text(st.sampled_from("ABCXYZ0129-_网吧电脑"), min_size=1, max_size=5),
            st.integers(0, 255),
            st.booleans(),
        ),
        max_size=20,
    ),
    mac=st.binary(min_size=6, max_size=6),
)
def test_round_trip_property(tid, entries, mac):
    names = _names(*entries)
    mac_text = ":".join(f"{b:02x}" for b in mac)
    assert parse_answer(build_answer(tid, names, mac_text)) == NodeStatus(tid, names, mac_text)


def test_hand_written_windows_answer_parses():
    status = parse_answer(bytes.fromhex(WINDOWS_ANSWER_HEX))
    assert status.transaction_id == 0x5C3A
    assert [(n.name, n.suffix, n.group) for n in status.names] == [
        ("WB-PC017", 0x00, False),
        ("WORKGROUP", 0x00, True),
        ("WB-PC017", 0x20, False),
        ("WORKGROUP", 0x1E, True),
    ]
    assert status.unit_id == "00:1e:68:3a:5c:f1"
    assert machine_name(status.names) == "WB-PC017"


def test_pointer_form_with_echoed_question_parses():
    status = parse_answer(bytes.fromhex(POINTER_ANSWER_HEX))
    assert status.transaction_id == 7
    assert [(n.name, n.suffix, n.group) for n in status.names] == [
        ("网吧-001", 0x00, False),
        ("WORKGROUP", 0x00, True),
    ]
    assert status.unit_id == "00:23:aa:bb:cc:dd"


def test_pointer_form_without_question_parses():
    # Same record, question dropped: the pointer is accepted, never followed.
    data = bytes.fromhex(POINTER_ANSWER_HEX)
    data = data[:4] + b"\x00\x00" + data[6:12] + data[12 + 38 :]
    assert machine_name(parse_answer(data).names) == "网吧-001"


def test_scapy_built_answer_with_52_byte_statistics_parses():
    # scapy's own layer appends 46 bytes after the MAC; the MAC still leads.
    from scapy.layers.netbios import NBNSNodeStatusResponseService as Entry

    packet = NBNSHeader(NAME_TRN_ID=3) / NBNSNodeStatusResponse(
        RR_NAME=b"*" + b"\x00" * 14,
        NODE_NAME=[Entry(NETBIOS_NAME=b"WB-002", SUFFIX=0, NAME_FLAGS=0x04)],
        MAC_ADDRESS="00:11:22:33:44:55",
        RDLENGTH=1 + 18 + 52,
    )
    status = parse_answer(bytes(packet))
    assert status.names == _names(("WB-002", 0, False))
    assert status.unit_id == "00:11:22:33:44:55"


def test_truncated_statistics_give_no_unit_id():
    # RDLENGTH covers the name table and only 5 bytes of statistics.
    data = bytearray(bytes.fromhex(WINDOWS_ANSWER_HEX)[: -46 + 5])
    data[54:56] = (1 + 4 * 18 + 5).to_bytes(2, "big")
    status = parse_answer(bytes(data))
    assert len(status.names) == 4 and status.unit_id is None


def test_latin1_fallback_for_non_gbk_names():
    data = bytearray(bytes.fromhex(WINDOWS_ANSWER_HEX))
    data[57 + 7] = 0xE9  # "WB-PC01\xe9": a GBK lead byte with no trail byte
    assert parse_answer(bytes(data)).names[0].name == "WB-PC01é"


# ---- machine_name ----------------------------------------------------------


def test_machine_name_prefers_unique_workstation_name():
    names = _names(("WORKGROUP", 0x00, True), ("WB-001", 0x00, False), ("WB-001", 0x20, False))
    assert machine_name(names) == "WB-001"


def test_machine_name_falls_back_to_server_name_then_none():
    assert machine_name(_names(("WORKGROUP", 0x00, True), ("WB-007", 0x20, False))) == "WB-007"
    assert machine_name(_names(("WORKGROUP", 0x00, True), ("WORKGROUP", 0x1E, True))) is None
    assert machine_name(_names(("WB-008", 0x03, False), ("WORKGROUP", 0x20, True))) is None
    assert machine_name([]) is None


# ---- hostile input ----------------------------------------------------------


def _patched(hex_text: str, offset: int, value: bytes) -> bytes:
    data = bytearray(bytes.fromhex(hex_text))
    data[offset : offset + len(value)] = value
    return bytes(data)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "truncated header"),
        (bytes(MAX_PAYLOAD + 1), "longer than"),
        (build_query(1), "not a response"),
        (_patched(WINDOWS_ANSWER_HEX, 2, b"\xac\x00"), "opcode 5"),  # registration response
        (_patched(WINDOWS_ANSWER_HEX, 2, b"\x84\x03"), "rcode 3"),
        (_patched(WINDOWS_ANSWER_HEX, 6, b"\x00\x02"), "2 answer records"),
        (_patched(WINDOWS_ANSWER_HEX, 10, b"\x00\x01"), "additional"),
        (_patched(WINDOWS_ANSWER_HEX, 46, b"\x00\x20"), "not NBSTAT"),
        (_patched(WINDOWS_ANSWER_HEX, 48, b"\x00\x03"), "class 3"),
        (_patched(WINDOWS_ANSWER_HEX, 12, b"\x21"), "malformed RR_NAME"),
        (_patched(WINDOWS_ANSWER_HEX, 14, b"Z"), "malformed RR_NAME"),
        (_patched(WINDOWS_ANSWER_HEX, 45, b"\x05"), "scope"),
        (_patched(WINDOWS_ANSWER_HEX, 12, b"\xc0\x20"), "pointer"),
        (_patched(WINDOWS_ANSWER_HEX, 54, b"\xff\xff"), "truncated RDATA"),
        (_patched(WINDOWS_ANSWER_HEX, 56, b"\xff"), "255 names do not fit"),
        (_patched(WINDOWS_ANSWER_HEX, 54, b"\x00\x00")[:56], "empty RDATA"),
        (_patched(WINDOWS_ANSWER_HEX, 57, b"WB\x1bPC"), "control characters"),
        (_patched(WINDOWS_ANSWER_HEX, 57, b" " * 15), "name 1 is empty"),
        (_patched(WINDOWS_ANSWER_HEX, 57, b"\x00" * 15), "name 1 is empty"),
        (bytes.fromhex(WINDOWS_ANSWER_HEX) + b"\x00", "trailing data after the answer record"),
        ("5c3a8400", "not bytes"),
    ],
)
def test_rejections_say_why(payload, reason):
    with pytest.raises(NetbiosParseError, match=re.escape(reason)):
        parse_answer(payload)


def test_nb_name_query_response_is_not_nbstat():
    # A name query (type NB) answer, as scapy builds it: right shape, wrong type.
    header = NBNSHeader(NAME_TRN_ID=1, RESPONSE=1, NM_FLAGS=0x40, ANCOUNT=1)
    payload = bytes(header / NBNSQueryResponse())
    with pytest.raises(NetbiosParseError, match="not NBSTAT"):
        parse_answer(payload)


@pytest.mark.parametrize("sample", [_valid(), bytes.fromhex(WINDOWS_ANSWER_HEX),
                                    bytes.fromhex(POINTER_ANSWER_HEX)])
def test_every_truncation_raises_parse_error(sample):
    parse_answer(sample)  # the whole answer is fine...
    for length in range(len(sample)):  # ...and no prefix of it is
        with pytest.raises(NetbiosParseError):
            parse_answer(sample[:length])


def _check_contract(data: bytes) -> None:
    try:
        status = parse_answer(data)
    except NetbiosParseError as exc:
        assert str(exc)
        return
    assert isinstance(status, NodeStatus)
    assert len(status.names) <= 255
    assert status.unit_id is None or re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", status.unit_id)
    for entry in status.names:
        assert entry.name and 0 <= entry.suffix <= 255
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in entry.name)


FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SAMPLES = [_valid(), bytes.fromhex(WINDOWS_ANSWER_HEX), bytes.fromhex(POINTER_ANSWER_HEX)]
# Header counts, then RDLENGTH and NUM_NAMES of the full-name and of the pointer samples.
COUNT_FIELDS = [(4, 2), (6, 2), (8, 2), (10, 2), (54, 2), (56, 1), (60, 2), (62, 1)]


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes(data):
    _check_contract(data)


@FUZZ
@given(st.binary(max_size=200).map(lambda tail: bytes.fromhex(WINDOWS_ANSWER_HEX)[:12] + tail))
def test_fuzz_random_body_after_valid_header(data):
    _check_contract(data)


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 40)),
    st.tuples(st.just("count"), st.sampled_from(COUNT_FIELDS),
              st.sampled_from([0, 1, 2, 0x7F, 0xFF, 0xFFFF]) | st.integers(0, 0xFFFF)),
)


@FUZZ
@given(st.sampled_from(SAMPLES), st.lists(_mutation, min_size=1, max_size=6))
def test_fuzz_mutated_answers(sample, mutations):
    data = bytearray(sample)
    for kind, where, what in mutations:
        if kind == "flip" and data:
            data[where % len(data)] ^= what
        elif kind == "insert":
            position = where % (len(data) + 1)
            data[position:position] = what
        elif kind == "delete" and data:
            position = where % len(data)
            del data[position : position + what]
        elif kind == "count":
            offset, size = where
            if offset + size <= len(data):
                data[offset : offset + size] = (what % (1 << (8 * size))).to_bytes(size, "big")
    _check_contract(bytes(data))


def test_memory_bound_on_worst_case_input():
    # The most names that fit under the size cap, each a full 15-byte GBK name.
    count = (MAX_PAYLOAD - 12 - 34 - 10 - 1 - 46) // 18
    worst = build_answer(1, _names(*[("网吧网吧网吧网-", i, False) for i in range(count)]),
                         "00:11:22:33:44:55")
    assert len(worst) <= MAX_PAYLOAD
    huge = b"\x00" * 10_000_000
    parse_answer(worst)  # warm caches and imports outside the measurement
    tracemalloc.start()
    try:
        assert len(parse_answer(worst).names) == count
        with pytest.raises(NetbiosParseError):
            parse_answer(huge)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
