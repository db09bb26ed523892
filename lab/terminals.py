"""The simulated café PCs: one daemon that sets up every terminal namespace and answers for them.

A process per terminal would cost ~10 MB each at 1,000 terminals; instead this
daemon enters each terminal's namespace once, configures its interface,
opens that terminal's NetBIOS socket there (a socket stays in the namespace
it was made in), and then serves every socket from one selector loop.  The
kernel of each namespace answers ARP and, unless the machine's firewall drops
it, ICMP echo, from the terminal's own MAC and address.

Each terminal runs the Windows firewall (DESIGN.md §7) unless its scenario
turns it off: unsolicited packets to ports nothing is allowed on are
dropped, not answered, so a scan meets "filtered", never a reset; ARP is not
IP and always answers. The rules go in through libnftables, called from
this process inside the terminal's namespace: an ``nft`` process per
terminal would cost a fork and an exec each, a thousand times.

Two kinds of chatter run from the same loop: terminals that announce their
name broadcast a DHCPINFORM with option 12 every few seconds (as Windows PCs
with a fixed address do), and misplugged foreign devices keep sending to a
gateway that never answers, so their kernels keep broadcasting ARP requests.

Usage: ``python -m lab.terminals SPEC.json`` (written by lab.build); prints
``ready N`` on stdout once every terminal is up.
"""

from __future__ import annotations

import ctypes
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
    firewall: bool = True
    tcp_open: tuple[int, ...] = ()  # ports its firewall lets in (the real-name client's, where it runs)


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


class FirewallError(RuntimeError):
    """libnftables is missing or refused a terminal's rules."""


class Nftables:
    """libnftables through ctypes: one call per ruleset, no process.

    libnftables opens its netlink socket in ``nft_ctx_new`` (checked with
    1.0.6: a context made in one namespace keeps changing that namespace
    after the thread moves), so every :meth:`apply` makes its own context in
    the namespace the calling thread is in. That costs ~0.25 ms.
    """

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError as exc:
            raise FirewallError(f"libnftables.so.1 not found (apt install libnftables1): {exc}") from None
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        self._lib = lib

    def apply(self, rules: str) -> None:
        """Load ``rules`` (nft syntax) into the calling thread's current network namespace."""
        lib = self._lib
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise FirewallError("nft_ctx_new failed")
        try:
            lib.nft_ctx_buffer_error(ctx)
            if lib.nft_run_cmd_from_buffer(ctx, rules.encode()) != 0:
                raise FirewallError((lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace").strip())
        finally:
            lib.nft_ctx_free(ctx)


def firewall_rules(t: TerminalSpec) -> str:
    """The terminal's inbound rules, as Windows Firewall behaves with its default profile.

    Answers to what the PC itself sent pass (connection tracking); so do the
    DHCP client's port, NetBIOS name service when sharing is on, the allowed
    TCP ports, and ICMP (whether echo is answered stays the kernel's
    ``icmp_echo_ignore_all``, set per machine). Everything else is dropped
    in silence: no reset, no port-unreachable.
    """
    udp = sorted({DHCP_CLIENT, *((137,) if t.netbios else ())})
    lines = ["table inet lab_firewall {", " chain input {",
             "  type filter hook input priority filter; policy drop;",
             '  iifname "lo" accept', "  ct state established,related accept",
             "  meta l4proto icmp accept",
             f"  udp dport {{ {', '.join(map(str, udp))} }} accept"]
    if t.tcp_open:
        lines.append(f"  tcp dport {{ {', '.join(map(str, sorted(t.tcp_open)))} }} accept")
    return "\n".join(lines + [" }", "}", ""])


def configure(t: TerminalSpec, nft: Nftables | None = None) -> socket.socket | None:
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
        if t.firewall:
            (nft or Nftables()).apply(firewall_rules(t))
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
    terminals = [TerminalSpec(**{**t, "tcp_open": tuple(t.get("tcp_open", ()))}) for t in spec["terminals"]]
    nft = Nftables() if any(t.firewall for t in terminals) else None
    chatters = [ChatterSpec(**c) for c in spec.get("chatter", [])]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * len(terminals) + len(chatters) + 256
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, need)), hard))
    sel = selectors.DefaultSelector()
    rng = random.Random(spec_path)
    timers: list[tuple[float, int, object, socket.socket]] = []  # (when, tiebreak, what, socket)
    now = time.monotonic()
    for t in terminals:
        sock = configure(t, nft)
        if sock is not None:
            sel.register(sock, selectors.EVENT_READ, t)
        if t.dhcp_interval:
            dsock = dhcp_socket(t)
            sel.register(dsock, selectors.EVENT_READ, None)  # the server's ACKs, drained and ignored
            timers.append((now + rng.uniform(0, t.dhcp_interval), len(timers), t, dsock))
    for c in chatters:
        timers.append((now + rng.uniform(0, c.interval), len(timers), c, chatter_socket(c)))
    heapq.heapify(timers)
    # In the log: the figure the lab's build time at 1,000 terminals depends on.
    print(f"configured {len(terminals)} terminals in {time.monotonic() - now:.2f} s", file=sys.stderr, flush=True)
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
