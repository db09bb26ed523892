"""The service scan without a network: banner escaping, matching, origins, arguments, the caps, the read deadline.

Nothing here sends a packet: answers are built by hand, reads use AF_UNIX
socket pairs, and the caps are exercised on sockets that never connect.
The scan against real listeners is tests/test_lab_services_scan.py.
"""

from __future__ import annotations

import asyncio
import re
import resource
import socket
import threading
import time
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.net.services import (
    MAX_BANNER,
    QUIET,
    ServiceScanError,
    _fit_descriptor_limit,
    _Pacer,
    _read,
    _Scan,
    _Sockets,
    _TcpResult,
    escape_banner,
    match_answer,
    scan,
)
from probe.net import services
from probe.observations import SignatureMatch
from probe.rules import load_ruleset
from probe.signatures import MAX_ANSWER, Signature, signatures_sha256

HOST, MAC = IPv4Address("198.18.10.5"), "02:00:00:00:00:05"
SHIPPED = load_ruleset().signatures
SHIPPED_ORIGIN = {s.id: "rules" for s in SHIPPED}
BY_ID = {s.id: s for s in SHIPPED}


def _sig(**kw) -> Signature:
    base = dict(id="lab-x", name="实验 / lab (fictional)", role="billing", ports=[9000], confidence=0.5,
                confirmed=False, source="test")
    return Signature(**{**base, **kw})


def _unescape(text: str) -> bytes:
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), text).encode("latin-1")


def _match(sig_id: str, port: int, answer: bytes | None, transport: str = "tcp") -> SignatureMatch | None:
    return match_answer(HOST, MAC, port, BY_ID[sig_id], answer, SHIPPED_ORIGIN, transport)


# --------------------------------------------------------------------------
# Banner escaping
# --------------------------------------------------------------------------


def test_banner_keeps_printable_ascii_and_escapes_the_rest():
    assert escape_banner(b"SSH-2.0-OpenSSH_9.6\r\n") == "SSH-2.0-OpenSSH_9.6\\x0d\\x0a"
    assert escape_banner(b"\x00\xff\\ ~") == "\\x00\\xff\\x5c ~"
    assert escape_banner("网吧".encode()) == "\\xe7\\xbd\\x91\\xe5\\x90\\xa7"
    assert escape_banner(b"A" * 1000) == "A" * MAX_BANNER
    assert escape_banner(b"abc", limit=2) == "ab" and escape_banner(b"abc", limit=-5) == ""
    assert escape_banner(bytearray(b"x\x01")) == escape_banner(memoryview(b"x\x01")) == "x\\x01"
    assert escape_banner(b"") == ""


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2 * MAX_BANNER), st.integers(-10, 3 * MAX_BANNER))
def test_banner_escaper_is_total_bounded_printable_and_reversible(data, limit):
    text = escape_banner(data, limit)
    assert isinstance(text, str) and all(" " <= c <= "~" for c in text)
    assert len(text) <= 4 * max(0, limit)
    assert _unescape(text) == data[:max(0, limit)]


# --------------------------------------------------------------------------
# The shipped signatures against the answers their documents describe
# --------------------------------------------------------------------------


def _mysql_packet(payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


def test_shipped_signatures_are_generic_sourced_and_cover_their_ports():
    assert {s.id for s in SHIPPED} == {"rtsp", "mssql-tds", "mssql-browser", "mysql", "postgresql", "iscsi-target"}
    for sig in SHIPPED:
        assert sig.source and ("RFC" in sig.source or "IANA" in sig.source), sig.id
        text = f"{sig.id} {sig.name} {sig.product or ''}".lower()
        for product in ("pubwin", "万象", "嘟嘟牛", "网维大师", "易乐游", "任子行", "hikvision", "dahua"):
            assert product not in text, (sig.id, product)
    assert not BY_ID["iscsi-target"].confirmed and BY_ID["iscsi-target"].confidence <= 0.3
    assert BY_ID["rtsp"].role == "camera"  # never counted as a server by a false hit


def test_rtsp_status_line():
    assert _match("rtsp", 554, b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE\r\n\r\n")
    assert _match("rtsp", 554, b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n\r\n")
    assert _match("rtsp", 554, b"HTTP/1.1 400 Bad Request\r\n\r\n") is None
    assert _match("rtsp", 554, None) is None
    assert BY_ID["rtsp"].payload == b"OPTIONS rtsp://x/ RTSP/1.0\r\nCSeq: 1\r\n\r\n"


def test_tds_prelogin_probe_is_the_spec_example_and_its_answer_matches():
    probe = BY_ID["mssql-tds"].payload
    assert probe[0] == 0x12 and int.from_bytes(probe[2:4], "big") == len(probe) == 47
    # A PRELOGIN answer: type 0x04, EOM, length, SPID 0, packet 1, window 0; VERSION first, then the terminator.
    options = bytes.fromhex("000015000601001b000102001c000103001d0000ff")
    data = bytes.fromhex("0f0007d00000" "00" "00" "00")
    body = options + data
    answer = bytes([0x04, 0x01]) + (8 + len(body)).to_bytes(2, "big") + b"\x00\x00\x01\x00" + body
    found = _match("mssql-tds", 1433, answer)
    assert found and (found.role, found.confirmed, found.origin) == ("database", True, "rules")
    assert _match("mssql-tds", 1433, b"\x12" + answer[1:]) is None  # our own request echoed is no answer
    assert _match("mssql-tds", 1434, answer) is None  # not a port of the signature


def test_mysql_and_mariadb_greetings_and_refusals():
    rest = b"\x08\x00\x00\x00" + b"abcdefgh" + b"\x00\xff\xf7\x08\x02\x00"
    assert _match("mysql", 3306, _mysql_packet(b"\x0a8.0.36\x00" + rest))
    assert _match("mysql", 3306, _mysql_packet(b"\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\x00" + rest))
    refused = _mysql_packet(b"\xff\x6a\x04Host '198.18.10.253' is not allowed to connect to this MySQL server")
    assert _match("mysql", 3306, refused)
    assert _match("mysql", 3306, b"SSH-2.0-OpenSSH_9.6\r\n") is None
    assert _match("mysql", 3306, _mysql_packet(b"\x09" + b"3.20\x00")) is None  # protocol 9 is not shipped


def test_postgresql_one_byte_answer():
    assert _match("postgresql", 5432, b"N") and _match("postgresql", 5432, b"S")
    assert _match("postgresql", 5432, b"NO") is None and _match("postgresql", 5432, b"") is None


def test_sql_browser_answer_only_over_udp():
    data = b"ServerName;BILLING;InstanceName;MSSQLSERVER;IsClustered;No;Version;15.0.2000.5;tcp;1433;;"
    answer = b"\x05" + len(data).to_bytes(2, "little") + data
    found = _match("mssql-browser", 1434, answer, "udp")
    assert found and found.transport == "udp"
    assert _match("mssql-browser", 1434, answer, "tcp") is None
    assert BY_ID["mssql-browser"].payload == b"\x03"


def test_open_port_signature_matches_silence_weakly():
    found = _match("iscsi-target", 3260, None)
    assert found and found.role == "diskless" and not found.confirmed and found.confidence <= 0.3


def test_answer_is_searched_only_within_the_bound():
    sig = _sig(match="NEEDLE")
    assert match_answer(HOST, MAC, 9000, sig, b"x" * (MAX_ANSWER - 6) + b"NEEDLE", {"lab-x": "profile"})
    assert match_answer(HOST, MAC, 9000, sig, b"x" * MAX_ANSWER + b"NEEDLE", {"lab-x": "profile"}) is None


def test_origin_is_carried_and_required():
    sig = _sig()
    assert match_answer(HOST, MAC, 9000, sig, None, {"lab-x": "profile"}).origin == "profile"
    assert match_answer(HOST, MAC, 9000, sig, None, {"lab-x": "rules"}).origin == "rules"
    for origin in ({}, {"lab-x": "venue"}):
        with pytest.raises(ServiceScanError, match="lab-x"):
            match_answer(HOST, MAC, 9000, sig, None, origin)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=MAX_ANSWER + 64), st.sampled_from(sorted(BY_ID)), st.sampled_from(["tcp", "udp"]))
def test_garbage_answers_give_a_match_or_nothing(answer, sig_id, transport):
    sig = BY_ID[sig_id]
    for port in sig.ports + [1]:
        try:
            found = match_answer(HOST, MAC, port, sig, answer, SHIPPED_ORIGIN, transport)
        except ServiceScanError:
            continue
        assert found is None or (isinstance(found, SignatureMatch) and found.port == port
                                 and found.transport == sig.transport == transport)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.binary(max_size=600))
def test_the_scanners_match_step_uses_each_signatures_own_answer(banner, answer):
    """A probe signature is judged on its probe's answer, an unprobed one on the unasked banner."""
    unasked = _sig(id="lab-banner", match="^BANNER")
    probed = _sig(id="lab-probe", probe="HELLO\r\n", match="^PONG")
    run = _Scan(hosts=[(HOST, MAC)], signatures=[unasked, probed], origin={"lab-banner": "profile",
                                                                           "lab-probe": "rules"},
                connect_timeout=1, read_timeout=1, read_bytes=MAX_ANSWER, retries=0, sockets=_Sockets(1),
                pacer=_Pacer(1.0), progress=None)
    result = _TcpResult(state="open", rtt_ms=0.5, banner=banner, answers={"lab-probe": answer}, probes_sent=1)
    run.tcp[(HOST, 9000)] = result
    hosts, matches = run.host_results()
    got = {m.signature for m in matches}
    assert ("lab-banner" in got) == banner.startswith(b"BANNER")
    assert ("lab-probe" in got) == answer.startswith(b"PONG")
    (open_port,) = hosts[0].open
    shown = banner or answer
    # The unasked banner wins; without one, the probe's answer (or nothing, after a probe was sent).
    assert open_port.banner_bytes == len(shown) and open_port.probed == (not banner)
    assert open_port.banner == (escape_banner(shown) if shown else None)


# --------------------------------------------------------------------------
# Arguments, an empty scan, resource limits
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, words", [
    (dict(max_concurrent=0), "max_concurrent"),
    (dict(connect_rate=0), "connect_rate"),
    (dict(read_timeout=0), "read_timeout"),
    (dict(read_bytes=MAX_ANSWER + 1), "read_bytes"),
    (dict(retries=11), "retries"),
    (dict(origin={}), "origin"),
])
def test_bad_arguments_refused_before_anything_is_sent(kwargs, words):
    args = dict(origin=SHIPPED_ORIGIN) | kwargs
    with pytest.raises(ServiceScanError, match=words):
        scan([(HOST, MAC)], SHIPPED, **args)


def test_no_hosts_gives_an_empty_scan_naming_its_signatures():
    result = scan([], SHIPPED, origin=SHIPPED_ORIGIN, max_concurrent=16, connect_rate=50)
    assert result.tcp_ports == [554, 1433, 3260, 3306, 5432] and result.udp_ports == [1434]
    assert result.hosts == [] and result.matches == [] and result.connections == 0
    assert result.signatures == sorted(BY_ID) and result.signatures_sha256 == signatures_sha256(SHIPPED)
    assert (result.max_concurrent, result.connect_rate, result.peak_concurrent) == (16, 50, 0)


def test_descriptor_limit_raised_or_cap_lowered():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert _fit_descriptor_limit(8) == 8
    if hard != resource.RLIM_INFINITY:
        cap = _fit_descriptor_limit(hard * 2)
        assert 1 <= cap < hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= min(hard, cap)


# --------------------------------------------------------------------------
# The caps and the read deadline (no network: AF_UNIX pairs, unconnected sockets)
# --------------------------------------------------------------------------


def test_pacer_spaces_every_start():
    async def run() -> list[float]:
        pacer, times = _Pacer(200.0), []

        async def one() -> None:
            await pacer.wait()
            times.append(asyncio.get_running_loop().time())

        await asyncio.gather(*(one() for _ in range(30)))
        return times

    times = asyncio.run(run())
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.005 - 1e-4 and times[-1] - times[0] >= 29 * 0.005 - 1e-3


def test_socket_cap_holds_and_the_count_is_honest():
    async def run() -> _Sockets:
        sockets = _Sockets(5)

        async def hold() -> None:
            async with sockets.new(socket.SOCK_STREAM) as sock:
                assert sockets.open <= 5 and not sock.getblocking()
                await asyncio.sleep(0.01)

        await asyncio.gather(*(hold() for _ in range(40)))
        return sockets

    sockets = asyncio.run(run())
    assert sockets.peak == 5 and sockets.open == 0


def _unread(sock: socket.socket) -> int:
    """Bytes waiting in ``sock`` that nobody has read yet (it must be non-blocking)."""
    count = 0
    try:
        while chunk := sock.recv(65536):
            count += len(chunk)
    except BlockingIOError:
        pass
    return count


def _read_from(writer_script, timeout: float, limit: int = MAX_ANSWER) -> tuple[bytes, float, int]:
    """What ``_read`` got from a writer thread, the seconds it took, and the bytes it left in the socket."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    stop = threading.Event()
    worker = threading.Thread(target=writer_script, args=(theirs, stop), daemon=True)
    worker.start()
    try:
        start = time.monotonic()
        data = asyncio.run(_read(ours, limit, timeout))
        return data, time.monotonic() - start, _unread(ours)
    finally:
        stop.set()
        worker.join()
        ours.close()
        theirs.close()


# Each test below tells which of the read's ends stopped it (the deadline, a quiet gap, the byte cap, the
# peer's close) by making the others far away, so a busy machine cannot blur them: its bounds are either
# lower bounds or far below the end it must not have waited for.


def test_slow_drip_cannot_outlast_the_read_deadline(monkeypatch):
    def drip(sock: socket.socket, stop: threading.Event) -> None:
        while not stop.wait(0.02):
            sock.send(b".")

    # No gap between drips can end the read, however late the dripper runs: only the deadline can. Without
    # it, the read would go on to MAX_ANSWER bytes, over a minute at 50 bytes a second.
    monkeypatch.setattr(services, "QUIET", 30.0)
    data, took, _ = _read_from(drip, 0.4)
    assert 0.35 <= took < 10 and set(data) == {ord(".")}
    assert len(data) <= took / 0.02 + 2  # one byte per 20 ms at most, however long the read took


def test_one_burst_ends_the_read_after_a_quiet_gap():
    def burst(sock: socket.socket, stop: threading.Event) -> None:
        sock.send(b"220 ready\r\n")
        stop.wait(60)

    data, took, _ = _read_from(burst, 30.0)
    # At least the quiet gap after the burst, and long before the 30 s deadline.
    assert data == b"220 ready\r\n" and QUIET - 0.02 <= took < 10


def test_read_stops_at_the_byte_cap_and_at_the_peers_close(monkeypatch):
    monkeypatch.setattr(services, "QUIET", 30.0)

    def flood(sock: socket.socket, stop: threading.Event) -> None:
        sock.sendall(b"F" * 8192)
        stop.wait(60)

    data, took, unread = _read_from(flood, 60.0, limit=1000)
    # Stopped at the cap: what lies past it is still in the socket, and no quiet gap or deadline was waited.
    assert data == b"F" * 1000 and unread == 8192 - 1000 and took < 10

    def close_at_once(sock: socket.socket, stop: threading.Event) -> None:
        sock.send(b"bye")
        sock.shutdown(socket.SHUT_WR)

    data, took, _ = _read_from(close_at_once, 60.0)
    assert data == b"bye" and took < 10  # the close ended it, not the 30 s quiet gap
