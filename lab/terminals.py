"""The simulated café PCs: one daemon that sets up every terminal namespace and answers for them.

A process per terminal would cost ~10 MB each at 1,000 terminals; instead this
daemon enters each terminal's namespace once, configures its interface,
opens that terminal's NetBIOS socket there (a socket stays in the namespace
it was made in), and then serves every socket from one selector loop.  The
kernel of each namespace answers ARP and, unless the machine's firewall drops
it, ICMP echo, from the terminal's own MAC and address.

Two kinds of chatter run from the same loop: terminals that announce their
name broadcast a DHCPINFORM with option 12 every few seconds (as Windows PCs
with a fixed address do), and misplugged foreign devices keep sending to a
gateway that never answers, so their kernels keep broadcasting ARP requests.

Usage: ``python -m lab.terminals SPEC.json`` (written by lab.build); prints
``ready N`` on stdout once every terminal is up.
"""

from __future__ import annotations

import heapq
import json
import random
import resource
import selectors
import socket
import struct
import sys
import time
from dataclasses import dataclass

from scapy.layers.dhcp import BOOTP, DHCP

from pyroute2 import IPRoute

from lab.netns import inside, sysctl
from probe.net.netbios import build_answer
from probe.observations import NetbiosName

NBSTAT = 0x21
WORKGROUP = "WORKGROUP"


@dataclass
class TerminalSpec:
    netns: str
    number: int
    name: str
    address: str
    prefixlen: int
    gateway: str
    mac: str
    netbios: bool
    icmp: bool
    dhcp_interval: float | None = None


@dataclass
class ChatterSpec:
    """A foreign device that keeps trying to reach an absent gateway."""

    netns: str
    target: str
    interval: float


DHCP_CLIENT, DHCP_SERVER = 68, 67


def dhcp_inform(t: TerminalSpec, xid: int) -> bytes:
    """The BOOTP payload of a DHCPINFORM a PC with a fixed address sends: its address, MAC and name."""
    chaddr = bytes.fromhex(t.mac.replace(":", ""))
    return bytes(BOOTP(op=1, htype=1, hlen=6, xid=xid, ciaddr=t.address, chaddr=chaddr.ljust(16, b"\0"))
                 / DHCP(options=[("message-type", "inform"), ("client_id", b"\x01" + chaddr),
                                 ("hostname", t.name.encode()), ("param_req_list", [1, 3, 6, 15]), "end"]))


def dhcp_socket(t: TerminalSpec) -> socket.socket:
    """A UDP socket on the terminal's port 68 that may broadcast (made inside its namespace)."""
    with inside(t.netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((t.address, DHCP_CLIENT))
        sock.setblocking(False)
        return sock


def chatter_socket(c: ChatterSpec) -> socket.socket:
    with inside(c.netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        return sock


def configure(t: TerminalSpec) -> socket.socket | None:
    """Bring one terminal's namespace up; return its NetBIOS socket if it shares names."""
    with inside(t.netns):
        # Windows PCs here speak IPv4 only; IPv6 chatter would only blur captures.
        for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
            sysctl(key, 1)
        sysctl("net.ipv4.icmp_echo_ignore_all", 0 if t.icmp else 1)
        with IPRoute() as ipr:
            links = {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}
            ipr.link("set", index=links["lo"], state="up")
            ipr.link("set", index=links["eth0"], state="up")
            ipr.addr("add", index=links["eth0"], address=t.address, prefixlen=t.prefixlen)
            ipr.route("add", dst="0.0.0.0/0", gateway=t.gateway)
        if not t.netbios:
            return None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", 137))
        sock.setblocking(False)
        return sock


def answer_for(query: bytes, t: TerminalSpec) -> bytes | None:
    """A node-status answer for a node-status query, as Windows gives it; None for anything else."""
    # Header (12) + encoded name (34) + type and class (4); question count must be 1.
    if len(query) < 50 or query[2] & 0x80 or struct.unpack_from("!H", query, 4)[0] != 1:
        return None
    if struct.unpack_from("!H", query, 46)[0] != NBSTAT:
        return None
    names = [
        NetbiosName(name=t.name, suffix=0x00, group=False),
        NetbiosName(name=WORKGROUP, suffix=0x00, group=True),
        NetbiosName(name=t.name, suffix=0x20, group=False),
    ]
    return build_answer(struct.unpack_from("!H", query, 0)[0], names, t.mac)


def main(spec_path: str) -> int:
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    terminals = [TerminalSpec(**t) for t in spec["terminals"]]
    chatters = [ChatterSpec(**c) for c in spec.get("chatter", [])]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * len(terminals) + len(chatters) + 256
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, need)), hard))
    sel = selectors.DefaultSelector()
    rng = random.Random(spec_path)
    timers: list[tuple[float, int, object, socket.socket]] = []  # (when, tiebreak, what, socket)
    now = time.monotonic()
    for t in terminals:
        sock = configure(t)
        if sock is not None:
            sel.register(sock, selectors.EVENT_READ, t)
        if t.dhcp_interval:
            dsock = dhcp_socket(t)
            sel.register(dsock, selectors.EVENT_READ, None)  # the server's ACKs, drained and ignored
            timers.append((now + rng.uniform(0, t.dhcp_interval), len(timers), t, dsock))
    for c in chatters:
        timers.append((now + rng.uniform(0, c.interval), len(timers), c, chatter_socket(c)))
    heapq.heapify(timers)
    print(f"ready {len(terminals)}", flush=True)
    while True:
        timeout = max(0.0, timers[0][0] - time.monotonic()) if timers else None
        for key, _ in sel.select(timeout):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                data, peer = sock.recvfrom(2048)
            except OSError:
                continue
            reply = answer_for(data, key.data) if key.data is not None else None
            if reply is not None:
                try:
                    sock.sendto(reply, peer)
                except OSError:
                    pass  # a lost answer is what a busy PC does too
        while timers and timers[0][0] <= time.monotonic():
            when, tie, what, sock = heapq.heappop(timers)
            try:
                if isinstance(what, TerminalSpec):
                    sock.sendto(dhcp_inform(what, rng.getrandbits(32)), ("255.255.255.255", DHCP_SERVER))
                    interval = what.dhcp_interval or 1.0
                else:
                    sock.sendto(b"\0", (what.target, 9))  # type: ignore[attr-defined]
                    interval = what.interval  # type: ignore[attr-defined]
            except OSError:
                interval = getattr(what, "dhcp_interval", None) or getattr(what, "interval", 1.0)
            heapq.heappush(timers, (when + interval * rng.uniform(0.8, 1.2), tie, what, sock))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
