"""DHCP seen passively: host names (option 12) that clients announce during the run.

Never sends anything. Frames come from the run's raw link; the BOOTP part is
dissected by scapy, and any frame scapy cannot make sense of is skipped and
counted, never raised.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from scapy.layers.dhcp import BOOTP, DHCP

from probe.net.link import Frame, RawLink, mac_str, parse_udp
from probe.observations import DhcpHostname

__all__ = ["DhcpHostnameListener", "parse_dhcp_hostname"]

MAX_HOSTNAME = 255


def parse_dhcp_hostname(data: bytes, time_: float) -> DhcpHostname | None:
    """The host name a DHCP client message carries, or None (not DHCP, no name, garbage)."""
    udp = parse_udp(data)
    if udp is None or udp.dport != 67:  # client → server messages carry the client's own name
        return None
    try:
        bootp = BOOTP(udp.payload)
        if bootp.op != 1 or DHCP not in bootp:
            return None
        opts = {o[0]: o[1:] for o in bootp[DHCP].options if isinstance(o, tuple) and len(o) >= 2}
        raw = opts.get("hostname", (None,))[0]
        if not isinstance(raw, bytes) or not raw or len(raw) > MAX_HOSTNAME:
            return None
        name = raw.rstrip(b"\0").decode("utf-8", errors="replace")
        if not name.isprintable():
            return None
        requested = opts.get("requested_addr", (None,))[0]
        address = IPv4Address(requested) if requested else (
            IPv4Address(bootp.ciaddr) if bootp.ciaddr != "0.0.0.0" else None)
        msg_type = opts.get("message-type", (None,))[0]
        return DhcpHostname(time=round(time_, 6), mac=mac_str(bytes(bootp.chaddr)[:6]), hostname=name,
                            address=address, message_type=msg_type if isinstance(msg_type, int) else None)
    except Exception:  # noqa: BLE001 - hostile bytes: skip the frame, never crash the run
        return None


class DhcpHostnameListener:
    """Collects DHCP host names seen on the link for as long as it is subscribed."""

    def __init__(self, link: RawLink, cap: int = 10_000) -> None:
        self._seen: list[DhcpHostname] = []
        self._cap = cap
        self._unsubscribe = link.subscribe(self._on_frame)

    def _on_frame(self, frame: Frame) -> None:
        if len(self._seen) < self._cap and (seen := parse_dhcp_hostname(frame.data, frame.time)):
            self._seen.append(seen)

    def stop(self) -> list[DhcpHostname]:
        """Stop listening and return what was seen."""
        self._unsubscribe()
        return list(self._seen)
