"""The probe's one raw link: an AF_PACKET socket on the café interface for the whole run.

Every frame the probe sends goes out through ``RawLink.send`` and every frame
the interface delivers comes in on a single receiver thread; both are written
to the run's pcap. Collectors subscribe to incoming frames and parse them by
slicing (a dissection per frame in Python would not keep up with a sweep).
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from scapy.utils import RawPcapWriter

from pyroute2 import IPRoute

from probe.iface import link_usable

__all__ = ["RawLink", "Frame", "FrameHandler", "mac_str", "LinkError", "LinkLost", "Udp", "parse_udp"]

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
RCVBUF = 8 * 1024 * 1024
# A full transmit queue (ENOBUFS; a qdisc or driver that drops) or a port briefly reset (ENETDOWN):
# with the carrier up these pass, so a frame is tried again after a growing pause.
TRANSIENT_SEND = frozenset({errno.ENOBUFS, errno.ENETDOWN, errno.EAGAIN})
# The interface itself is gone (a USB adapter pulled out).
GONE = frozenset({errno.ENODEV, errno.ENXIO})
SEND_TRIES = 10        # per frame; pauses 1, 2, 4 … 256 ms, about 0.5 s in all before the frame is dropped
SEND_PAUSE = 0.001
SEND_PAUSE_MAX = 0.256
STALL_LIMIT = 10.0     # no frame accepted for this long with the carrier up: the port is as good as lost


class LinkError(OSError):
    """The interface could not be opened for raw frames."""


class LinkLost(Exception):
    """The café port lost its carrier, vanished or stopped taking frames while the run used it.

    Deliberately not an OSError: a collector that tolerates a socket error of
    its own must not swallow the end of the link; the run's stage runner
    turns it into an interruption (the run is kept, signed and queued).
    """


class Frame:
    """One received frame with its receive time (seconds since the link opened)."""

    __slots__ = ("data", "time", "outgoing")

    def __init__(self, data: bytes, time_: float, outgoing: bool) -> None:
        self.data = data
        self.time = time_
        self.outgoing = outgoing


FrameHandler = Callable[[Frame], None]


def mac_str(raw: bytes) -> str:
    """Six bytes as a lowercase colon-separated MAC."""
    return ":".join(f"{b:02x}" for b in raw)


class Udp:
    """The addressing of an Ethernet/IPv4/UDP frame and its payload."""

    __slots__ = ("eth_src", "src", "dst", "sport", "dport", "payload")

    def __init__(self, eth_src: bytes, src: int, dst: int, sport: int, dport: int, payload: bytes) -> None:
        self.eth_src, self.src, self.dst = eth_src, src, dst
        self.sport, self.dport, self.payload = sport, dport, payload


def parse_udp(data: bytes) -> Udp | None:
    """Slice an untagged Ethernet/IPv4/UDP frame (unfragmented); None for anything else."""
    if len(data) < 42 or data[12:14] != b"\x08\x00" or data[14] >> 4 != 4:
        return None
    ihl = (data[14] & 0x0F) * 4
    flags_frag = struct.unpack_from("!H", data, 20)[0]
    if ihl < 20 or data[23] != 17 or flags_frag & 0x1FFF or len(data) < 14 + ihl + 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", data, 14 + ihl)
    start = 14 + ihl + 8
    return Udp(data[6:12], int.from_bytes(data[26:30], "big"), int.from_bytes(data[30:34], "big"),
               sport, dport, data[start:start + max(0, length - 8)])


class RawLink:
    """Send and receive raw Ethernet frames on one interface, recording all of them."""

    def __init__(self, iface: str, pcap_path: Path | None = None) -> None:
        try:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise LinkError("需要 root 或 CAP_NET_RAW 权限 / raw sockets need root or CAP_NET_RAW") from None
        try:
            self._sock.bind((iface, 0))
        except OSError as exc:
            self._sock.close()
            raise LinkError(f"无法打开接口 {iface} / cannot open interface {iface}: {exc.strerror}") from None
        try:
            # A sweep's replies arrive in a burst; a small buffer would drop them silently.
            self._sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE
        except OSError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self._sock.settimeout(0.05)
        try:
            # Opened with the raw socket, so both stay in the namespace the link was opened in.
            self._netlink = IPRoute()
            self._index = socket.if_nametoindex(iface)
        except Exception as exc:  # noqa: BLE001 - netlink refusing is one more reason the port cannot be used
            self._sock.close()
            raise LinkError(f"无法读取接口 {iface} / cannot read interface {iface}: {exc}") from None
        self._netlink_lock = threading.Lock()
        self.iface = iface
        self.mac: bytes = self._sock.getsockname()[4][:6]
        self.started = time.monotonic()
        self._wall0 = time.time()
        self._handlers: list[FrameHandler] = []
        self._lock = threading.Lock()
        self._pcap = RawPcapWriter(str(pcap_path), linktype=1, sync=False) if pcap_path else None
        if self._pcap is not None:
            self._pcap.write_header(None)  # also a run that saw nothing leaves a readable pcap
        self.sent = 0
        self.received = 0
        self.send_retries = 0   # sends tried again after a transient error with the carrier up
        self.send_dropped = 0   # frames given up after SEND_TRIES (the collectors' own retries ask again)
        self._lost: str | None = None
        self._failing_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name=f"rx-{iface}", daemon=True)
        self._thread.start()

    # -- public ------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the link opened (the clock of every observation)."""
        return time.monotonic() - self.started

    @property
    def lost(self) -> str | None:
        """Why the link is gone, once a send or receive error met a port without carrier; else None."""
        return self._lost

    def carrier(self) -> bool:
        """Whether the interface is up with carrier now, as netlink reports it.

        Netlink's carrier flag changes the moment a cable goes; the ioctl flags
        (IFF_RUNNING) and the operstate follow only when the kernel's link
        watch runs, up to a second later, while sends already fail.
        """
        with self._netlink_lock:
            try:
                msgs = self._netlink.get_links(self._index)
            except Exception:  # noqa: BLE001 - the interface is gone (ENODEV) or netlink failed: no usable port
                return False
        return bool(msgs) and link_usable(msgs[0])

    def send(self, frame: bytes) -> bool:
        """Send one frame and record it; False when it had to be dropped.

        A transient refusal (ENOBUFS, ENETDOWN, EAGAIN) with the carrier up is
        tried again after a growing pause, which also paces the caller; after
        SEND_TRIES the frame is dropped and counted, since every collector asks
        again for what stays unanswered. An error while the port has no
        carrier, or on a port that is gone, raises :class:`LinkLost`, as does a
        port that has taken no frame for STALL_LIMIT seconds.
        """
        pause = SEND_PAUSE
        for attempt in range(SEND_TRIES):
            try:
                self._sock.send(frame)
            except OSError as exc:
                self._send_failed(exc)
                if attempt + 1 < SEND_TRIES:
                    self.send_retries += 1
                    time.sleep(pause)
                    pause = min(SEND_PAUSE_MAX, pause * 2)
                continue
            self._failing_since = None
            self.sent += 1
            self._record(frame, time.time())
            return True
        self.send_dropped += 1
        return False

    def subscribe(self, handler: FrameHandler) -> Callable[[], None]:
        """Call ``handler`` for every frame from now on; returns the unsubscribe function."""
        with self._lock:
            self._handlers = [*self._handlers, handler]

        def unsubscribe() -> None:
            with self._lock:
                self._handlers = [h for h in self._handlers if h is not handler]

        return unsubscribe

    def close(self) -> None:
        """Stop receiving, flush the capture, close the socket."""
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        with self._netlink_lock:
            self._netlink.close()
        if self._pcap is not None:
            with self._lock:
                self._pcap.close()
                self._pcap = None

    def __enter__(self) -> "RawLink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------
    def _mark_lost(self, exc: OSError) -> str:
        if self._lost is None:
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            self._lost = (f"网吧网口 {self.iface} 失去连接（{name}）/ café port {self.iface} lost its link "
                          f"({name}: {exc.strerror or exc})")
        return self._lost

    def _send_failed(self, exc: OSError) -> None:
        """Raise LinkLost when this send error means the port is gone; return to retry a transient one."""
        if exc.errno in GONE or not self.carrier():
            raise LinkLost(self._mark_lost(exc)) from exc
        if exc.errno not in TRANSIENT_SEND:
            raise exc
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._failing_since > STALL_LIMIT:
            raise LinkLost(self._mark_lost(exc)) from exc

    def _record(self, frame: bytes, wall: float) -> None:
        if self._pcap is None:
            return
        sec = int(wall)
        with self._lock:
            if self._pcap is not None:
                self._pcap.write_packet(frame, sec=sec, usec=int((wall - sec) * 1e6))

    def _receive(self) -> None:
        recv = self._sock.recvfrom
        while not self._stop.is_set():
            try:
                data, addr = recv(65535)
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    return
                if not self.carrier():
                    self._mark_lost(exc)
                # The error is reported once per event; the pause keeps a flapping port from spinning us.
                time.sleep(0.05)
                continue
            self.received += 1
            self._record(data, time.time())
            frame = Frame(data, time.monotonic() - self.started, addr[2] == PACKET_OUTGOING)
            for handler in self._handlers:
                try:
                    handler(frame)
                except Exception:  # noqa: BLE001 - one collector's bug must not stop the capture
                    pass
