"""Camera discovery without a network: the questions, hostile answers, fragments, and the merge.

The survey tests drive :func:`probe.net.cameras.survey` through a link whose
"devices" answer with the lab simulator's own answers (lab.camera_sim), so
both sides of every protocol are checked against each other. RTSP, which
goes through the kernel, is replaced by canned answers here (nothing may
connect out of a unit test); tests/test_lab_cameras.py runs it for real.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import time
import tracemalloc
import uuid
from ipaddress import IPv4Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from lab.camera_sim import CameraSpec, dhip_answer, rtsp_answer, sadp_answer, ws_discovery_answer
from probe.net import cameras
from probe.net.cameras import (
    CameraError,
    _Reassembly,
    build_dhip_probe,
    build_rtsp_options,
    build_sadp_probe,
    build_ws_probe,
    dhip_frame,
    is_onvif,
    parse_dhip_answer,
    parse_rtsp_answer,
    parse_sadp_answer,
    parse_ws_answer,
    read_xml,
    survey,
)
from probe.net.link import Frame, mac_str, parse_udp
from probe.observations import CameraProblem

A = IPv4Address
PROBE_IP = A("198.18.95.250")
PROBE_MAC = bytes.fromhex("02000000fe95")
MID = "urn:uuid:6f1c2f7e-8c1d-4c5e-9a6b-0d2e3f405162"

ONVIF_CAM = CameraSpec("198.18.95.10", "02:00:00:00:95:0a", "camera", "generic", True, True,
                       "LAB-IPC-1 (fictional)", "LAB-IPC-1-0001")
HIK_CAM = CameraSpec("198.18.95.11", "02:00:00:00:95:0b", "camera", "hikvision", False, True,
                     "LAB-IPC-2 (fictional)", "LAB-IPC-2-0002")
DAHUA_NVR = CameraSpec("198.18.95.12", "02:00:00:00:95:0c", "nvr", "dahua", False, True,
                       "LAB-NVR-1 (fictional)", "LAB-NVR-1-0003")

BOMB = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
                   for i in range(1, 10))
        + b"]><lolz>&lol9;</lolz>")
XXE = (b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header><a:RelatesTo '
       b'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing">&x;</a:RelatesTo></s:Header>'
       b"<s:Body><d:ProbeMatches xmlns:d=\"http://schemas.xmlsoap.org/ws/2005/04/discovery\"/></s:Body>"
       b"</s:Envelope>")
EXTERNAL_DTD = b'<?xml version="1.0"?><!DOCTYPE ProbeMatch SYSTEM "http://192.0.2.1/x.dtd"><ProbeMatch/>'


# ------------------------------------------------------------------ builders


def test_ws_probe_is_an_onvif_probe():
    for types in ("dn:NetworkVideoTransmitter", "tds:Device", None):
        payload = build_ws_probe(MID, types)
        root = read_xml(payload, "probe")
        header = {cameras.local_name(el.tag): el for el in root[0]}
        assert root.tag == "{http://www.w3.org/2003/05/soap-envelope}Envelope"
        assert header["Action"].text == "http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe"
        assert header["MessageID"].text == MID
        assert header["To"].text == "urn:schemas-xmlsoap-org:ws:2005:04:discovery"
        probe = root[1][0]
        assert probe.tag == "{http://schemas.xmlsoap.org/ws/2005/04/discovery}Probe"
        assert [el.text for el in probe] == ([types] if types else [])
        # the Types prefixes are declared with ONVIF's namespaces
        assert b'xmlns:dn="http://www.onvif.org/ver10/network/wsdl"' in payload
        assert b'xmlns:tds="http://www.onvif.org/ver10/device/wsdl"' in payload
        assert len(payload) < 1400
    for bad in ("urn:uuid:X", MID.upper(), MID + "<a/>"):
        with pytest.raises(ValueError):
            build_ws_probe(bad, None)
    with pytest.raises(ValueError):
        build_ws_probe(MID, "dn:NVT</d:Types><evil/>")


def test_sadp_probe_as_the_sadp_tool_sends_it():
    probe_uuid = str(uuid.uuid4()).upper()
    assert build_sadp_probe(probe_uuid) == (
        f'<?xml version="1.0" encoding="utf-8"?><Probe><Uuid>{probe_uuid}</Uuid>'
        "<Types>inquiry</Types></Probe>").encode()
    with pytest.raises(ValueError):
        build_sadp_probe(probe_uuid.lower())


def test_dhip_probe_header():
    payload = build_dhip_probe()
    body = payload[32:]
    assert payload[:4] == b"\x20\x00\x00\x00" and payload[4:8] == b"DHIP"  # not "PIHD"
    assert payload[8:16] == bytes(8)
    assert struct.unpack_from("<QQ", payload, 16) == (len(body), len(body))
    assert json.loads(body) == {"method": "DHDiscover.search", "params": {"mac": "", "uni": 1}}


def test_rtsp_options_bytes():
    assert build_rtsp_options(A("198.18.95.10")) == (
        b"OPTIONS rtsp://198.18.95.10:554/ RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: cafe-probe\r\n\r\n")


# ------------------------------------------------------------------ WS-Discovery answers


def test_sim_answers_parse_for_each_vendor_prefix_set():
    for vendor in ("hikvision", "dahua", "generic"):
        spec = CameraSpec(**{**ONVIF_CAM.to_json(), "vendor": vendor})
        answer = parse_ws_answer(ws_discovery_answer(build_ws_probe(MID, "dn:NetworkVideoTransmitter"), spec))
        assert answer.relates_to == MID and is_onvif(answer)
        assert answer.types == ["dn:NetworkVideoTransmitter", "tds:Device"]
        assert answer.xaddrs == ["http://198.18.95.10/onvif/device_service"]
        assert "onvif://www.onvif.org/hardware/LAB-IPC-1%20%28fictional%29" in answer.scopes


def test_sim_matches_types_as_ws_discovery_says():
    nvr = CameraSpec(**{**DAHUA_NVR.to_json(), "onvif": True})
    assert ws_discovery_answer(build_ws_probe(MID, "dn:NetworkVideoTransmitter"), nvr) is None
    assert parse_ws_answer(ws_discovery_answer(build_ws_probe(MID, "tds:Device"), nvr)).types == ["tds:Device"]
    assert ws_discovery_answer(build_ws_probe(MID, None), nvr) is not None          # untyped matches all
    assert ws_discovery_answer(build_ws_probe(MID, "tds:Device"), HIK_CAM) is None  # ONVIF off
    assert ws_discovery_answer(b"<not a probe/>", ONVIF_CAM) is None
    assert ws_discovery_answer(BOMB, ONVIF_CAM) is None


def _envelope(header: str, body: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" '
            'xmlns:wsa5="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
            'xmlns:wsdd="http://schemas.xmlsoap.org/ws/2005/04/discovery" '
            'xmlns:tdn="http://www.onvif.org/ver10/network/wsdl">'
            f"<SOAP-ENV:Header>{header}</SOAP-ENV:Header><SOAP-ENV:Body>{body}</SOAP-ENV:Body>"
            "</SOAP-ENV:Envelope>").encode()


RELATES = f"<wsa5:RelatesTo>{MID}</wsa5:RelatesTo>"
ACTION = "<wsa5:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa5:Action>"


def test_probematches_merged_over_matches_with_any_prefix():
    match = ("<wsdd:ProbeMatch><wsa5:EndpointReference><wsa5:Address>urn:uuid:{n}</wsa5:Address>"
             "</wsa5:EndpointReference><wsdd:Types>tdn:NetworkVideoTransmitter {t}</wsdd:Types>"
             "<wsdd:Scopes>\n onvif://www.onvif.org/type/video_encoder\tonvif://www.onvif.org/name/{n}\n"
             "</wsdd:Scopes><wsdd:XAddrs>http://198.18.95.30/onvif/device_service</wsdd:XAddrs></wsdd:ProbeMatch>")
    payload = _envelope(RELATES + ACTION, "<wsdd:ProbeMatches>" + match.format(n="one", t="tds:Device")
                        + match.format(n="two", t="") + "</wsdd:ProbeMatches>")
    answer = parse_ws_answer(payload)
    assert answer.relates_to == MID and answer.endpoints == ["urn:uuid:one", "urn:uuid:two"]
    assert answer.types == ["tdn:NetworkVideoTransmitter", "tds:Device"]
    assert answer.scopes == ["onvif://www.onvif.org/type/video_encoder", "onvif://www.onvif.org/name/one",
                             "onvif://www.onvif.org/name/two"]
    assert answer.xaddrs == ["http://198.18.95.30/onvif/device_service"]


def test_probematches_refusals():
    empty = "<wsdd:ProbeMatches/>"
    assert parse_ws_answer(_envelope(RELATES, empty)).types == []
    cases = {
        "no RelatesTo": _envelope(ACTION, empty),
        "not ProbeMatches": _envelope(RELATES + ACTION.replace("ProbeMatches", "Hello"), empty),
        "no ProbeMatches": _envelope(RELATES, "<wsdd:Probe/>"),
        "not a SOAP envelope": b"<ProbeMatch><Uuid>x</Uuid></ProbeMatch>",
        "not well-formed": b"<a><b></a>",
        "refused XML": BOMB,
    }
    for reason, payload in cases.items():
        with pytest.raises(CameraError, match=reason):
            parse_ws_answer(payload)


def test_printer_and_pc_answers_are_not_onvif():
    printer = parse_ws_answer(_envelope(RELATES, "<wsdd:ProbeMatches><wsdd:ProbeMatch><wsdd:Types>"
                                        "wsdp:Device wprt:PrintDeviceType</wsdd:Types><wsdd:XAddrs>"
                                        "http://198.18.95.40:5357/x</wsdd:XAddrs></wsdd:ProbeMatch></wsdd:ProbeMatches>"))
    assert not is_onvif(printer)
    nvr = parse_ws_answer(_envelope(RELATES, "<wsdd:ProbeMatches><wsdd:ProbeMatch><wsdd:Types>tds:Device"
                                    "</wsdd:Types><wsdd:Scopes>ONVIF://www.onvif.org/type/Network_Video_Storage"
                                    "</wsdd:Scopes></wsdd:ProbeMatch></wsdd:ProbeMatches>"))
    assert is_onvif(nvr)


def test_values_are_bounded_and_cleaned():
    many = " ".join(f"onvif://www.onvif.org/x/{i}" for i in range(500))
    long_uri = "onvif://www.onvif.org/" + "a" * 600
    payload = _envelope(RELATES.replace(MID, MID + "\u009b"),
                        f"<wsdd:ProbeMatches><wsdd:ProbeMatch><wsdd:Scopes>{long_uri} {many}</wsdd:Scopes>"
                        "</wsdd:ProbeMatch></wsdd:ProbeMatches>")
    answer = parse_ws_answer(payload)
    assert answer.relates_to == MID  # the C1 control character (valid XML, not valid text) is gone
    assert len(answer.scopes) == cameras.MAX_ITEMS - 1 and long_uri not in answer.scopes


# ------------------------------------------------------------------ hostile XML


def test_billion_laughs_refused_in_bounded_memory():
    for parse in (parse_ws_answer, parse_sadp_answer):
        tracemalloc.start()
        t0 = time.monotonic()
        with pytest.raises(CameraError, match="refused XML"):
            parse(BOMB)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # The memory peak shows nothing was expanded; an expansion would also run for minutes, so the
        # time bound only catches that, not a slow machine.
        assert peak < 1_000_000 and time.monotonic() - t0 < 10


def test_quadratic_blowup_refused():
    blow = (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "' + b"x" * 20000 + b'">]><ProbeMatch>'
            + b"&a;" * 10000 + b"</ProbeMatch>")
    tracemalloc.start()
    with pytest.raises(CameraError):
        parse_sadp_answer(blow)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000


def test_external_entities_and_dtds_refused():
    for payload in (XXE, EXTERNAL_DTD):
        for parse in (parse_ws_answer, parse_sadp_answer):
            with pytest.raises(CameraError) as err:
                parse(payload)
            assert "root:" not in str(err.value)


def test_oversized_datagram_refused_before_parsing():
    huge = b"<ProbeMatch><Uuid>" + b"A" * (70 * 1024) + b"</Uuid></ProbeMatch>"
    for parse in (parse_ws_answer, parse_sadp_answer, parse_dhip_answer):
        with pytest.raises(CameraError, match="more than"):
            parse(huge)


def test_unknown_encoding_is_a_camera_error():
    with pytest.raises(CameraError):
        parse_sadp_answer('<?xml version="1.0" encoding="GB2312"?><ProbeMatch><Uuid>甲</Uuid></ProbeMatch>'
                          .encode("gb2312"))


# ------------------------------------------------------------------ SADP and DHIP answers

# The field layout of a ProbeMatch as open-source SADP scanners' test data shows it (values here are the lab's).
SADP_PUBLIC_SHAPE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<ProbeMatch>\n<Uuid>{U}</Uuid>\n<Types>inquiry</Types>\n'
    b"<DeviceType>123456</DeviceType>\n<DeviceDescription>LAB-DVR-9 (fictional)</DeviceDescription>\n"
    b"<DeviceSN>LAB-DVR-9-0009</DeviceSN>\n<CommandPort>8000</CommandPort>\n<HttpPort>80</HttpPort>\n"
    b"<MAC>02-00-00-00-95-1F</MAC>\n<IPv4Address>198.18.95.31</IPv4Address>\n"
    b"<IPv4SubnetMask>255.255.255.0</IPv4SubnetMask>\n<DHCP>false</DHCP>\n<Activated>true</Activated>\n"
    b"</ProbeMatch>\n")


def test_sadp_answers():
    probe_uuid = str(uuid.uuid4()).upper()
    answer = parse_sadp_answer(sadp_answer(build_sadp_probe(probe_uuid), HIK_CAM))
    assert (answer.uuid, answer.model, answer.serial, answer.mac, answer.ipv4) == (
        probe_uuid, "LAB-IPC-2 (fictional)", "LAB-IPC-2-0002", "02:00:00:00:95:0b", A("198.18.95.11"))
    shaped = parse_sadp_answer(SADP_PUBLIC_SHAPE.replace(b"{U}", probe_uuid.encode()))
    assert (shaped.device_type, shaped.model, shaped.mac) == ("123456", "LAB-DVR-9 (fictional)", "02:00:00:00:95:1f")
    assert sadp_answer(build_sadp_probe(probe_uuid), ONVIF_CAM) is None          # not a Hikvision
    assert sadp_answer(SADP_PUBLIC_SHAPE, HIK_CAM) is None                        # a ProbeMatch is no Probe
    with pytest.raises(CameraError, match="not ProbeMatch"):
        parse_sadp_answer(build_sadp_probe(probe_uuid))
    with pytest.raises(CameraError, match="without Uuid"):
        parse_sadp_answer(b"<ProbeMatch><DeviceSN>x</DeviceSN></ProbeMatch>")
    odd = parse_sadp_answer(b"<ProbeMatch><Uuid>u</Uuid><MAC>zz-00</MAC><IPv4Address>999.1.1.1</IPv4Address>"
                            + "<DeviceSN>\u009b31mred\u0085</DeviceSN></ProbeMatch>".encode())
    assert (odd.mac, odd.ipv4, odd.serial) == (None, None, "31mred")  # C1 controls are valid XML, not text


def _dhip(obj: object, trailer: bytes = b"") -> bytes:
    return dhip_frame(json.dumps(obj).encode() + trailer)


def test_dhip_answers():
    answer = parse_dhip_answer(dhip_answer(build_dhip_probe(), DAHUA_NVR))
    assert (answer.mac, answer.device_type, answer.device_class, answer.serial, answer.ipv4) == (
        "02:00:00:00:95:0c", "LAB-NVR-1 (fictional)", "NVR", "LAB-NVR-1-0003", A("198.18.95.12"))
    assert dhip_answer(build_dhip_probe(), HIK_CAM) is None
    assert dhip_answer(dhip_answer(build_dhip_probe(), DAHUA_NVR), DAHUA_NVR) is None  # answers only searches
    notify = {"mac": "02:00:00:00:95:0c", "method": "client.notifyDevInfo",
              "params": {"deviceInfo": {"DeviceType": 7, "SerialNo": "S", "IPv4Address": "x"}}}
    odd = parse_dhip_answer(_dhip(notify, b"\x00\x00"))
    assert (odd.device_type, odd.serial, odd.ipv4) == (None, "S", None)
    good = _dhip(notify)
    cases = {
        "shorter than its header": good[:20],
        "bad header": good[:4] + b"PIHD" + good[8:],
        "declared": good[:-5],
        "not JSON": dhip_frame(b"\xff\xfe{"),
        "not a JSON object": _dhip([1, 2]),
        "is not client.notifyDevInfo": _dhip({"method": "DHDiscover.search"}),
        "no deviceInfo": _dhip({"method": "client.notifyDevInfo", "params": {"deviceInfo": []}}),
    }
    for reason, payload in cases.items():
        with pytest.raises(CameraError, match=reason):
            parse_dhip_answer(payload)


def test_dhip_json_bombs():
    for body in (b"[" * 60000 + b"]" * 60000, b'{"a":' + b"9" * 50000 + b"}"):
        with pytest.raises(CameraError, match="not JSON"):
            parse_dhip_answer(dhip_frame(body[: cameras.MAX_DATAGRAM - 40]))


# ------------------------------------------------------------------ RTSP answers


def test_rtsp_answers():
    request = build_rtsp_options(A("198.18.95.11"))
    for spec, server in ((HIK_CAM, "Hikvision-Webs"), (DAHUA_NVR, "Rtsp Server/3.0")):
        answer = parse_rtsp_answer(rtsp_answer(request, spec))
        assert (answer.status, answer.reason, answer.server, answer.cseq) == (200, "OK", server, 1)
    assert rtsp_answer(request, CameraSpec(**{**HIK_CAM.to_json(), "rtsp": False})) is None
    assert rtsp_answer(b"GET / HTTP/1.1\r\n\r\n", HIK_CAM) is None
    describe = rtsp_answer(b"DESCRIBE rtsp://198.18.95.11:554/ RTSP/1.0\r\nCSeq: 7\r\n\r\n", HIK_CAM)
    assert parse_rtsp_answer(describe).status == 401 and b"WWW-Authenticate: Digest" in describe
    assert parse_rtsp_answer(b"RTSP/1.0 401 Unauthorized\r\ncseq: 1\r\nSERVER: a\x07b\r\n").server == "ab"
    assert parse_rtsp_answer(b"RTSP/1.0 200 OK\r\nCSeq: x\r\n\r\nServer: body").server is None
    assert parse_rtsp_answer(b"RTSP/1.0 200\n").cseq is None
    cases = {
        "not an RTSP answer": b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n",
        "status line incomplete": b"RTSP/1.0 200 O",
        "bad status line": b"RTSP/1.0 abc OK\r\n\r\n",
        "over": b"RTSP/1.0 200 OK\r\n" + b"X: y\r\n" * 3000,
    }
    for reason, data in cases.items():
        with pytest.raises(CameraError, match=reason):
            parse_rtsp_answer(data)


# ------------------------------------------------------------------ fuzz

VALID = {
    parse_ws_answer: ws_discovery_answer(build_ws_probe(MID, "tds:Device"), ONVIF_CAM),
    parse_sadp_answer: sadp_answer(build_sadp_probe(str(uuid.uuid4()).upper()), HIK_CAM),
    parse_dhip_answer: dhip_answer(build_dhip_probe(), DAHUA_NVR),
    parse_rtsp_answer: rtsp_answer(build_rtsp_options(A("198.18.95.12")), DAHUA_NVR),
}
PARSERS = list(VALID)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_camera_errors(parse, data: bytes) -> None:
    try:
        parse(data)
    except CameraError:
        pass


@FUZZ
@given(parse=st.sampled_from(PARSERS), data=st.binary(max_size=3000))
def test_fuzz_garbage(parse, data):
    _only_camera_errors(parse, data)


@st.composite
def mutated(draw):
    parse = draw(st.sampled_from(PARSERS))
    data = bytearray(VALID[parse])
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from([b"<", b">", b"&", b"\x00", b"]]>", b'"', b"<!DOCTYPE a>",
                                                   b"&amp;", b"\xff\xfe", b"{", b"\r\n\r\n", b"[[[[", b"<x:y>"]))
        else:
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 200))]
    return parse, bytes(data)


@FUZZ
@given(case=mutated())
def test_fuzz_mutated_valid_answers(case):
    parse, data = case
    _only_camera_errors(parse, data)


@FUZZ
@given(data=st.binary(max_size=2000), which=st.sampled_from([ws_discovery_answer, sadp_answer, dhip_answer,
                                                             rtsp_answer]))
def test_fuzz_simulator_takes_garbage(data, which):
    for spec in (ONVIF_CAM, HIK_CAM, DAHUA_NVR):
        assert which(data, spec) is None or isinstance(which(data, spec), bytes)


# ------------------------------------------------------------------ fragments


def _udp_frame(src_mac: str, src: str, dst: str, sport: int, dport: int, payload: bytes,
               dst_mac: str | None = None, ip_id: int = 1) -> Ether:
    return (Ether(src=src_mac, dst=dst_mac or mac_str(PROBE_MAC)) / IP(src=src, dst=dst, id=ip_id)
            / UDP(sport=sport, dport=dport) / Raw(payload))


def test_reassembly_joins_fragments_in_any_order():
    payload = ws_discovery_answer(build_ws_probe(MID, None), ONVIF_CAM)
    frames = [bytes(f) for f in fragment(_udp_frame(ONVIF_CAM.mac, ONVIF_CAM.address, str(PROBE_IP), 3702, 40000,
                                                    payload), fragsize=600)]
    assert len(frames) == 3 and parse_udp(frames[0]).payload != payload  # the link's own slicer is not enough
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        re = _Reassembly({int(PROBE_IP)})
        got = [re.feed(frames[i]) for i in order]
        assert got[:2] == [None, None]
        assert got[2].payload == payload and mac_str(got[2].eth_src) == ONVIF_CAM.mac and got[2].sport == 3702
        assert re.pending == {}


def test_reassembly_refuses_overlaps_and_bounds_pending():
    payload = b"x" * 2000
    frames = [bytes(f) for f in fragment(_udp_frame("02:00:00:00:00:01", "198.18.95.9", str(PROBE_IP), 1, 2,
                                                    payload), fragsize=800)]
    re = _Reassembly({int(PROBE_IP)})
    assert re.feed(frames[0]) is None and re.feed(frames[0]) is None  # a duplicate piece overlaps: dropped
    assert re.feed(frames[1]) is None and re.feed(frames[2]) is None  # so the datagram never completes
    for n in range(40):  # first pieces of many datagrams: only the newest few are kept
        first = bytes(fragment(_udp_frame("02:00:00:00:00:01", "198.18.95.9", str(PROBE_IP), 1, 2, payload,
                                          ip_id=100 + n), fragsize=800)[0])
        re.feed(first)
    assert len(re.pending) == _Reassembly.MAX_PENDING
    assert _Reassembly({int(PROBE_IP)}).feed(bytes(_udp_frame("02:00:00:00:00:01", "198.18.95.9", "198.18.95.8",
                                                              1, 2, b"x"))) is None  # not for us


# ------------------------------------------------------------------ the survey over a simulated switch


class _Device:
    """A device on the fake switch: a spec, and how many questions of each kind it loses first."""

    def __init__(self, spec: CameraSpec, lose: int = 0, sadp_multicast: bool = False) -> None:
        self.spec, self.lose, self.sadp_multicast = spec, lose, sadp_multicast


class _Switch:
    """A link whose frames reach simulated devices that answer through the subscribers, as the wire would."""

    iface = "lo"  # only for the held answer port; nothing is sent on it

    def __init__(self, devices: list[_Device], extra=None) -> None:
        self.mac = PROBE_MAC
        self.devices = devices
        self.extra = extra or (lambda frame, deliver: None)
        self.sent: list[bytes] = []
        self.handlers: list = []

    def subscribe(self, handler):
        self.handlers.append(handler)
        return lambda: self.handlers.remove(handler)

    def deliver(self, frame: Ether) -> None:
        for data in ([bytes(f) for f in fragment(frame, fragsize=1400)] if len(frame) > 1514 else [bytes(frame)]):
            for handler in list(self.handlers):
                handler(Frame(data, 0.0, False))

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)
        for handler in list(self.handlers):
            handler(Frame(frame, 0.0, True))  # the link reports our own frames as outgoing
        udp = parse_udp(frame)
        for dev in self.devices:
            answer = {3702: ws_discovery_answer, 37020: sadp_answer, 37810: dhip_answer}[udp.dport](
                udp.payload, dev.spec)
            if answer is None:
                continue
            if dev.lose:
                dev.lose -= 1
                continue
            to_group = udp.dport == 37020 and dev.sadp_multicast
            self.deliver(_udp_frame(dev.spec.mac, dev.spec.address,
                                    "239.255.255.250" if to_group else str(IPv4Address(udp.src)),
                                    udp.dport, 37020 if to_group else udp.sport, answer,
                                    dst_mac="01:00:5e:7f:ff:fa" if to_group else None))
        self.extra(udp, self.deliver)


def _hosts(*specs: CameraSpec) -> list[tuple[IPv4Address, str]]:
    return [(A(s.address), s.mac) for s in specs]


def test_survey_finds_each_kind_and_survives_loss():
    onvif_nvr = CameraSpec("198.18.95.13", "02:00:00:00:95:0d", "nvr", "hikvision", True, False,
                           "LAB-NVR-2 (fictional)", "LAB-NVR-2-0004")
    link = _Switch([_Device(ONVIF_CAM, lose=2), _Device(HIK_CAM, sadp_multicast=True), _Device(DAHUA_NVR, lose=1),
                    _Device(onvif_nvr)])
    # onvif_nvr was not swept: its MAC comes from the answering frame
    result = survey(link, _hosts(ONVIF_CAM, HIK_CAM, DAHUA_NVR), PROBE_IP, window=0.05, tries=2, rtsp=False)
    got = {str(c.address): c for c in result.cameras}
    assert list(got) == ["198.18.95.10", "198.18.95.11", "198.18.95.12", "198.18.95.13"]
    assert [got[a].how for a in got] == [["ws-discovery"], ["sadp"], ["dhip"], ["ws-discovery", "sadp"]]
    assert got["198.18.95.13"].mac == "02:00:00:00:95:0d" and got["198.18.95.12"].mac == DAHUA_NVR.mac
    assert got["198.18.95.10"].xaddrs == ["http://198.18.95.10/onvif/device_service"]
    assert got["198.18.95.13"].types == ["tds:Device"] and got["198.18.95.13"].serial == "LAB-NVR-2-0004"
    assert (got["198.18.95.12"].model, got["198.18.95.11"].model) == ("LAB-NVR-1 (fictional)",
                                                                      "LAB-IPC-2 (fictional)")
    assert result.problems == [] and result.probes_sent == 8 and result.rtsp_checked == 0


def test_survey_frames_stay_on_the_lan_with_fresh_ids():
    link = _Switch([])
    survey(link, [], PROBE_IP, window=0.01, tries=3, rtsp=False)
    assert len(link.sent) == 12
    ws_ids, sadp_ids, sports = set(), set(), set()
    for frame in link.sent:
        pkt = Ether(frame)
        assert pkt[IP].ttl == 1 and pkt.src == mac_str(PROBE_MAC) and pkt[IP].src == str(PROBE_IP)
        assert (pkt[IP].dst, pkt.dst) in {("239.255.255.250", "01:00:5e:7f:ff:fa"),
                                          ("255.255.255.255", "ff:ff:ff:ff:ff:ff")}
        sports.add(pkt[UDP].sport)
        body = bytes(pkt[Raw])
        if pkt[UDP].dport == 3702:
            ws_ids.add(read_xml(body, "p")[0][1].text)
        elif pkt[UDP].dport == 37020:
            sadp_ids.add(read_xml(body, "p")[0].text)
    assert len(ws_ids) == 6 and len(sadp_ids) == 3 and len(sports) == 1


def test_survey_hostile_and_stray_answers():
    pc_mac = "02:00:00:00:95:63"

    def hostile(udp, deliver):
        src = "198.18.95.66"
        if udp.dport == 3702:
            deliver(_udp_frame("02:00:00:00:95:42", src, str(PROBE_IP), 3702, udp.sport, BOMB))
            # a valid answer to someone else's probe, and a printer answering ours
            deliver(_udp_frame("02:00:00:00:95:43", "198.18.95.67", str(PROBE_IP), 3702, udp.sport,
                               ws_discovery_answer(build_ws_probe(MID, None), ONVIF_CAM)))
        elif udp.dport == 37020:
            deliver(_udp_frame("02:00:00:00:95:42", src, str(PROBE_IP), 37020, udp.sport, XXE))
            # another PC's SADP tool asks the group: not for us, not a problem
            deliver(_udp_frame(pc_mac, "198.18.95.99", "239.255.255.250", 50000, 37020,
                               build_sadp_probe(str(uuid.uuid4()).upper()), dst_mac="01:00:5e:7f:ff:fa"))
            deliver(_udp_frame(pc_mac, "198.18.95.99", "239.255.255.250", 37020, 37020, b"<junk",
                               dst_mac="01:00:5e:7f:ff:fa"))
            # ProbeMatches for someone else's Uuid, to us and to the group: stale or foreign, not counted
            other = sadp_answer(build_sadp_probe(str(uuid.uuid4()).upper()), HIK_CAM)
            deliver(_udp_frame(HIK_CAM.mac, HIK_CAM.address, str(PROBE_IP), 37020, udp.sport, other))
            deliver(_udp_frame(HIK_CAM.mac, HIK_CAM.address, "239.255.255.250", 37020, 37020, other,
                               dst_mac="01:00:5e:7f:ff:fa"))
        elif udp.dport == 37810:
            deliver(_udp_frame("02:00:00:00:95:42", src, str(PROBE_IP), 37810, udp.sport, b"\x00" * 40))

    printer = CameraSpec("198.18.95.68", "02:00:00:00:95:44", "camera", "generic", False, False, "x", "y")
    link = _Switch([_Device(printer)], extra=hostile)
    result = survey(link, [], PROBE_IP, window=0.02, tries=2, rtsp=False)
    assert result.cameras == []
    assert [(str(p.address), p.how) for p in result.problems] == [
        ("198.18.95.66", "dhip"), ("198.18.95.66", "sadp"), ("198.18.95.66", "ws-discovery")]
    assert all("refused XML" in p.error for p in result.problems if p.how != "dhip")


def test_survey_merges_rtsp_and_drops_non_rtsp(monkeypatch):
    answers = {
        "198.18.95.10": rtsp_answer(build_rtsp_options(A("198.18.95.10")), ONVIF_CAM),
        "198.18.95.20": b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n",
        "198.18.95.21": b"RTSP/1.0 2x0 OK\r\n\r\n",
        "198.18.95.22": None,
    }
    live = {"now": 0, "peak": 0}

    async def fake_ask(address, timeout):
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        await asyncio.sleep(0.01 if str(address) != "198.18.95.10" else 0.12)  # after discovery's first answers
        live["now"] -= 1
        return answers.get(str(address))

    monkeypatch.setattr(cameras, "_rtsp_ask", fake_ask)
    hosts = _hosts(ONVIF_CAM) + [(A(a), f"02:00:00:00:95:{n:02x}") for n, a in enumerate(list(answers)[1:])]
    hosts += [(A(f"198.18.96.{n}"), "02:00:00:00:96:00") for n in range(1, 40)]
    result = survey(_Switch([_Device(ONVIF_CAM)]), hosts, PROBE_IP, window=0.1, tries=1, max_concurrent=5)
    cams = {str(c.address): c for c in result.cameras}
    assert list(cams) == ["198.18.95.10"]
    cam = cams["198.18.95.10"]
    assert cam.how == ["ws-discovery", "rtsp"] and cam.mac == ONVIF_CAM.mac
    assert (cam.rtsp_status, cam.rtsp_server) == (200, "LIVE555 Streaming Media v2018.08.28")
    assert result.problems == [CameraProblem(address=A("198.18.95.21"), how="rtsp",
                                             error="RTSP: bad status line 'RTSP/1.0 2x0 OK'")]
    assert result.rtsp_checked == len(hosts) and live["peak"] == 5


def test_survey_argument_checks():
    for bad in ({"window": 0}, {"tries": 0}, {"rtsp_timeout": -1}, {"max_concurrent": 0}):
        with pytest.raises(ValueError):
            survey(_Switch([]), [], PROBE_IP, **bad)


def test_problems_are_bounded():
    def flood(udp, deliver):
        if udp.dport == 3702:
            for n in range(cameras.MAX_PROBLEMS + 50):
                deliver(_udp_frame("02:00:00:00:95:42", str(IPv4Address(int(A("198.18.0.0")) + n)), str(PROBE_IP),
                                   3702, udp.sport, random.randbytes(50)))

    result = survey(_Switch([], extra=flood), [], PROBE_IP, window=0.05, tries=1, rtsp=False)
    assert len(result.problems) == cameras.MAX_PROBLEMS
