"""What the lab's cameras and NVRs answer: WS-Discovery, SADP, DHIP and RTSP OPTIONS.

Pure functions build each answer from the question and a :class:`CameraSpec`
(None when that device would stay silent), so the lab daemon, the tests and
this module's own small server share them. The shapes follow public
material: ONVIF Core's discovery (SOAP 1.2, WS-Discovery 2005/04, ``onvif://``
scopes), SADP's ProbeMatch fields as Hikvision's SADP tool and open-source
scanners read them, DHIP's 32-byte header and ``client.notifyDevInfo`` as
open-source Dahua discovery code reads it, RTSP as RFC 2326 and device
captures show it. Every model, serial and firmware string is the lab's own
and marked fictional.

Usage: ``python -m lab.camera_sim --serve SPEC.json`` inside the device's
namespace (``lab.netns.spawn``); prints ``ready`` once its sockets are open
and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
import sys
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from email.utils import formatdate
from ipaddress import IPv4Interface
from typing import Literal
from urllib.parse import quote

from probe.net.cameras import (
    DHIP_PORT,
    DISCOVERY_GROUP,
    MAX_RTSP_ANSWER,
    ONVIF_DN,
    ONVIF_TDS,
    RTSP_PORT,
    SADP_PORT,
    SOAP_ENV,
    WSA,
    WSD,
    WSD_PORT,
    CameraError,
    dhip_frame,
    dhip_message,
    local_name,
    read_xml,
)

__all__ = ["CameraSpec", "Responder", "dhip_answer", "rtsp_answer", "sadp_answer", "serve", "ws_discovery_answer"]

DHIP_GROUP = "239.255.255.251"  # where Dahua's ConfigTool also sends its search


@dataclass(frozen=True)
class CameraSpec:
    """One lab camera or NVR: where it is and which ways it answers."""

    address: str
    mac: str
    kind: Literal["camera", "nvr"]
    vendor: Literal["hikvision", "dahua", "generic"]
    onvif: bool
    rtsp: bool
    model: str
    serial: str
    prefixlen: int = 24
    gateway: str = "0.0.0.0"

    @classmethod
    def from_json(cls, data: dict) -> "CameraSpec":
        return cls(**data)

    def to_json(self) -> dict:
        return asdict(self)


# Prefixes differ between vendors' SOAP stacks; the probe must not depend on them.
_PREFIXES = {
    "hikvision": ("env", "wsadis", "d"),
    "dahua": ("SOAP-ENV", "wsa", "wsdd"),
    "generic": ("s", "a", "d"),
}
_SERVER = {
    "dahua": "Rtsp Server/3.0",                       # as a Dahua camera's OPTIONS answer shows it
    "hikvision": "Hikvision-Webs",                    # the Server name scanners report for Hikvision (web) servers
    "generic": "LIVE555 Streaming Media v2018.08.28",  # LIVE555's RTSPServer, in many small cameras
}
_PUBLIC = "OPTIONS, DESCRIBE, PLAY, PAUSE, SETUP, TEARDOWN, SET_PARAMETER, GET_PARAMETER"
_FIRMWARE = "V0.0.0 build 000000 (lab, fictional)"


def _ip(spec: CameraSpec) -> IPv4Interface:
    return IPv4Interface(f"{spec.address}/{spec.prefixlen}")


# ---------------------------------------------------------------------------
# WS-Discovery (ONVIF)
# ---------------------------------------------------------------------------


def _probe_of(datagram: bytes) -> tuple[str, list[str] | None] | None:
    """(MessageID, requested type local names or None) of a WS-Discovery Probe, else None."""
    try:
        root = read_xml(datagram, "WS-Discovery probe")
    except CameraError:
        return None
    children = {local_name(el.tag): el for el in root}
    header, body = children.get("Header"), children.get("Body")
    if local_name(root.tag) != "Envelope" or header is None or body is None:
        return None
    fields = {local_name(el.tag): (el.text or "").strip() for el in header}
    probe = next((el for el in body if local_name(el.tag) == "Probe"), None)
    if probe is None or not fields.get("MessageID") or not fields.get("Action", "/Probe").endswith("/Probe"):
        return None
    types = next((el.text for el in probe if local_name(el.tag) == "Types"), None)
    wanted = [token.rsplit(":", 1)[-1] for token in types.split()] if types and types.strip() else None
    return fields["MessageID"], wanted


def _types(spec: CameraSpec) -> tuple[str, set[str]]:
    """The Types text a device announces and the local names it matches."""
    if spec.kind == "nvr":
        return "tds:Device", {"Device"}
    return "dn:NetworkVideoTransmitter tds:Device", {"NetworkVideoTransmitter", "Device"}


def _scopes(spec: CameraSpec) -> str:
    kind = "Network_Video_Storage" if spec.kind == "nvr" else "Network_Video_Transmitter"
    profiles = ["Streaming", "G", "T"] if spec.kind == "nvr" else ["Streaming", "T"]
    scopes = [f"onvif://www.onvif.org/type/{kind}", "onvif://www.onvif.org/type/video_encoder",
              *(f"onvif://www.onvif.org/Profile/{p}" for p in profiles),
              f"onvif://www.onvif.org/hardware/{quote(spec.model, safe='')}",
              f"onvif://www.onvif.org/name/{quote(spec.vendor.upper() + ' LAB (fictional)', safe='')}",
              "onvif://www.onvif.org/location/country/china", "onvif://www.onvif.org/location/city/fuzhou",
              f"onvif://www.onvif.org/MAC/{spec.mac.lower()}",
              f"onvif://www.onvif.org/serial/{quote(spec.serial, safe='')}"]
    return " ".join(scopes)


def ws_discovery_answer(datagram: bytes, spec: CameraSpec) -> bytes | None:
    """The ProbeMatches a device sends to a Probe whose Types it implements; None otherwise.

    An untyped Probe matches every device (WS-Discovery 2005/04 §5.3); a
    typed one only a device implementing all its types, compared by local
    name. RelatesTo carries the Probe's MessageID.
    """
    if not spec.onvif:
        return None
    probe = _probe_of(datagram)
    if probe is None:
        return None
    message_id, wanted = probe
    announced, matches = _types(spec)
    if wanted is not None and not set(wanted) <= matches:
        return None
    env, wsa, wsd = _PREFIXES[spec.vendor]
    endpoint = uuid.uuid5(uuid.NAMESPACE_URL, f"lab-camera:{spec.serial}")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<{env}:Envelope xmlns:{env}="{SOAP_ENV}" xmlns:{wsa}="{WSA}" xmlns:{wsd}="{WSD}"'
        f' xmlns:dn="{ONVIF_DN}" xmlns:tds="{ONVIF_TDS}">'
        f"<{env}:Header>"
        f"<{wsa}:MessageID>urn:uuid:{uuid.uuid4()}</{wsa}:MessageID>"
        f"<{wsa}:RelatesTo>{_xml_text(message_id)}</{wsa}:RelatesTo>"
        f"<{wsa}:To>{WSA}/role/anonymous</{wsa}:To>"
        f"<{wsa}:Action>{WSD}/ProbeMatches</{wsa}:Action>"
        f'<{wsd}:AppSequence InstanceId="1" MessageNumber="1"/>'
        f"</{env}:Header>"
        f"<{env}:Body><{wsd}:ProbeMatches><{wsd}:ProbeMatch>"
        f"<{wsa}:EndpointReference><{wsa}:Address>urn:uuid:{endpoint}</{wsa}:Address></{wsa}:EndpointReference>"
        f"<{wsd}:Types>{announced}</{wsd}:Types>"
        f"<{wsd}:Scopes>{_xml_text(_scopes(spec))}</{wsd}:Scopes>"
        f"<{wsd}:XAddrs>http://{spec.address}/onvif/device_service</{wsd}:XAddrs>"
        f"<{wsd}:MetadataVersion>1</{wsd}:MetadataVersion>"
        f"</{wsd}:ProbeMatch></{wsd}:ProbeMatches></{env}:Body>"
        f"</{env}:Envelope>"
    ).encode()


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------------------
# Hikvision SADP
# ---------------------------------------------------------------------------


def sadp_answer(datagram: bytes, spec: CameraSpec) -> bytes | None:
    """The ProbeMatch a Hikvision device sends to a SADP inquiry (the Probe's Uuid echoed); None otherwise."""
    if spec.vendor != "hikvision":
        return None
    try:
        root = read_xml(datagram, "SADP probe")
    except CameraError:
        return None
    fields = {local_name(el.tag): (el.text or "").strip() for el in root}
    if local_name(root.tag) != "Probe" or not fields.get("Uuid") or not fields.get("Types", "").startswith("inquiry"):
        return None
    ip = _ip(spec)
    values = {
        "Uuid": fields["Uuid"], "Types": "inquiry",
        "DeviceType": "90002" if spec.kind == "nvr" else "90001",  # a numeric class, lab-only values
        "DeviceDescription": spec.model, "DeviceSN": spec.serial,
        "CommandPort": "8000", "HttpPort": "80", "MAC": spec.mac.lower().replace(":", "-"),
        "IPv4Address": str(ip.ip), "IPv4SubnetMask": str(ip.netmask), "IPv4Gateway": spec.gateway,
        "IPv6Address": "::", "IPv6Gateway": "::", "IPv6MaskLen": "64", "DHCP": "false",
        "AnalogChannelNum": "0", "DigitalChannelNum": "16" if spec.kind == "nvr" else "1",
        "SoftwareVersion": _FIRMWARE, "DSPVersion": _FIRMWARE, "BootTime": "2026-01-01 00:00:00",
        "Activated": "true", "PasswordResetAbility": "true",
    }
    body = "".join(f"<{k}>{_xml_text(v)}</{k}>" for k, v in values.items())
    return f'<?xml version="1.0" encoding="UTF-8"?><ProbeMatch>{body}</ProbeMatch>'.encode()


# ---------------------------------------------------------------------------
# Dahua DHIP
# ---------------------------------------------------------------------------


def dhip_answer(datagram: bytes, spec: CameraSpec) -> bytes | None:
    """The ``client.notifyDevInfo`` a Dahua device sends to ``DHDiscover.search``; None otherwise."""
    if spec.vendor != "dahua":
        return None
    try:
        message = dhip_message(datagram)
    except CameraError:
        return None
    if message.get("method") != "DHDiscover.search":
        return None
    ip = _ip(spec)
    info = {
        "DeviceClass": "NVR" if spec.kind == "nvr" else "IPC", "DeviceType": spec.model,
        "HttpPort": 80, "HttpsPort": 443, "Port": 37777,
        "IPv4Address": {"DefaultGateway": spec.gateway, "DhcpEnable": False, "IPAddress": str(ip.ip),
                        "SubnetMask": str(ip.netmask)},
        "MachineName": spec.serial, "Manufacturer": "Lab (fictional)", "SerialNo": spec.serial,
        "Vendor": "Lab (fictional)", "Version": _FIRMWARE,
        "VideoInputChannels": 0 if spec.kind == "nvr" else 1, "RemoteVideoInputChannels": 16 if spec.kind == "nvr" else 0,
    }
    body = json.dumps({"mac": spec.mac.lower(), "method": "client.notifyDevInfo",
                       "params": {"deviceInfo": info}}, separators=(",", ":")).encode()
    return dhip_frame(body + b"\r\n")


# ---------------------------------------------------------------------------
# RTSP
# ---------------------------------------------------------------------------


def rtsp_answer(request: bytes, spec: CameraSpec) -> bytes | None:
    """A device's answer to one RTSP request head; None when RTSP is off or the bytes are not a request.

    OPTIONS needs no credentials (200 OK with Public); every other method
    asks for them (401 with a Digest challenge), as cameras do.
    """
    if not spec.rtsp:
        return None
    lines = request.decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] != "RTSP/1.0" or not parts[1].startswith("rtsp://"):
        return None
    cseq = next((line.partition(":")[2].strip() for line in lines[1:]
                 if line.partition(":")[0].strip().lower() == "cseq"), "")
    if not cseq.isdigit() or len(cseq) > 9:
        return b"RTSP/1.0 400 Bad Request\r\n\r\n"
    head = [f"CSeq: {cseq}", f"Server: {_SERVER[spec.vendor]}", f"Date: {formatdate(usegmt=True)}"]
    if parts[0] == "OPTIONS":
        return "\r\n".join(["RTSP/1.0 200 OK", *head, f"Public: {_PUBLIC}", "", ""]).encode()
    realm = f"Login to {spec.serial}" if spec.vendor == "dahua" else "IP Camera(lab)"
    challenge = f'WWW-Authenticate: Digest realm="{realm}", nonce="{uuid.uuid4().hex}", stale="FALSE"'
    return "\r\n".join(["RTSP/1.0 401 Unauthorized", *head, challenge, "", ""]).encode()


# ---------------------------------------------------------------------------
# Sockets: one device's responder, for this module's server or a shared loop
# ---------------------------------------------------------------------------


class Responder:
    """The sockets of one lab device and what it does when one is readable.

    Create it inside the device's namespace (a socket stays in the namespace
    it was made in). ``watch`` and ``unwatch`` are called for every socket it
    opens and before every socket it closes (a selector's register and
    unregister), so one selector loop can serve many devices; call
    :meth:`ready` for each readable socket.
    """

    def __init__(self, spec: CameraSpec, watch: Callable[[socket.socket], object] = lambda s: None,
                 unwatch: Callable[[socket.socket], object] = lambda s: None) -> None:
        self.spec, self.watch, self.unwatch = spec, watch, unwatch
        self.udp: dict[socket.socket, Callable[[bytes, CameraSpec], bytes | None]] = {}
        self.listener: socket.socket | None = None
        self.clients: dict[socket.socket, bytearray] = {}
        if spec.onvif:
            self.udp[self._udp(WSD_PORT, str(DISCOVERY_GROUP))] = ws_discovery_answer
        if spec.vendor == "hikvision":
            self.udp[self._udp(SADP_PORT, str(DISCOVERY_GROUP))] = sadp_answer
        if spec.vendor == "dahua":
            self.udp[self._udp(DHIP_PORT, DHIP_GROUP)] = dhip_answer  # the broadcast search arrives too
        if spec.rtsp:
            self.listener = socket.create_server((spec.address, RTSP_PORT), backlog=64)
            self.listener.setblocking(False)
        for sock in [*self.udp, *([self.listener] if self.listener else [])]:
            watch(sock)

    def _udp(self, port: int, group: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        # Joined on the device's own address: a lab namespace has no default route to pick one by.
        mreq = socket.inet_aton(group) + socket.inet_aton(self.spec.address)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
        return sock

    def ready(self, sock: socket.socket) -> None:
        """Serve one readable socket of this device."""
        if sock in self.udp:
            self._datagram(sock)
        elif sock is self.listener:
            self._accept()
        elif sock in self.clients:
            self._stream(sock)

    def _datagram(self, sock: socket.socket) -> None:
        try:
            data, peer = sock.recvfrom(65535)
        except OSError:
            return
        answer = self.udp[sock](data, self.spec)
        if answer is not None:
            try:
                sock.sendto(answer, peer)
            except OSError:
                pass  # the asker vanished; a device does not care

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        client.setblocking(False)
        self.clients[client] = bytearray()
        self.watch(client)

    def _stream(self, client: socket.socket) -> None:
        buf = self.clients[client]
        try:
            chunk = client.recv(4096)
        except OSError:
            chunk = b""
        buf += chunk
        while chunk and b"\r\n\r\n" in buf:
            head, _, rest = bytes(buf).partition(b"\r\n\r\n")
            buf[:] = rest
            answer = rtsp_answer(head + b"\r\n\r\n", self.spec)
            try:
                if answer is None:
                    raise OSError("not an RTSP request")
                client.sendall(answer)
            except OSError:
                chunk = b""
        if not chunk or len(buf) > MAX_RTSP_ANSWER:
            self._drop(client)

    def _drop(self, client: socket.socket) -> None:
        self.clients.pop(client, None)
        self.unwatch(client)
        client.close()

    def close(self) -> None:
        """Close every socket of the device."""
        for client in list(self.clients):
            self._drop(client)
        for sock in [*self.udp, *([self.listener] if self.listener else [])]:
            self.unwatch(sock)
            sock.close()
        self.udp.clear()
        self.listener = None


def serve(spec: CameraSpec, announce: bool = True) -> None:
    """Answer for one device until SIGTERM (run inside its namespace)."""
    selector = selectors.DefaultSelector()
    responder = Responder(spec, watch=lambda s: selector.register(s, selectors.EVENT_READ),
                          unwatch=selector.unregister)
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    if announce:
        print("ready", flush=True)
    try:
        while running[0]:
            for key, _ in selector.select(timeout=0.2):
                responder.ready(key.fileobj)
    finally:
        responder.close()
        selector.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="实验室摄像机/NVR 模拟 / lab camera and NVR responder")
    parser.add_argument("--serve", metavar="SPEC.json", required=True, help="设备描述 / the device's CameraSpec")
    args = parser.parse_args(argv)
    with open(args.serve, encoding="utf-8") as fh:
        spec = CameraSpec.from_json(json.load(fh))
    serve(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
