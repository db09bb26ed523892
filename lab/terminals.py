"""The simulated café PCs: one daemon that sets up every terminal namespace and answers for them.

A process per terminal would cost ~10 MB each at 1,000 terminals; instead this
daemon enters each terminal's namespace once, configures its interface,
opens that terminal's NetBIOS socket there (a socket stays in the namespace
it was made in), and then serves every socket from one selector loop.  The
kernel of each namespace answers ARP and, unless the machine's firewall drops
it, ICMP echo, from the terminal's own MAC and address.

Usage: ``python -m lab.terminals SPEC.json`` (written by lab.build); prints
``ready N`` on stdout once every terminal is up.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import struct
import sys
from dataclasses import dataclass

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
        terminals = [TerminalSpec(**t) for t in json.load(fh)["terminals"]]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, len(terminals) + 256)), hard))
    sel = selectors.DefaultSelector()
    for t in terminals:
        sock = configure(t)
        if sock is not None:
            sel.register(sock, selectors.EVENT_READ, t)
    print(f"ready {len(terminals)}", flush=True)
    while True:
        for key, _ in sel.select():
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                data, peer = sock.recvfrom(2048)
            except OSError:
                continue
            reply = answer_for(data, key.data)
            if reply is not None:
                try:
                    sock.sendto(reply, peer)
                except OSError:
                    pass  # a lost answer is what a busy PC does too


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
