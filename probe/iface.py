"""The probe's café interface as the kernel reports it (netlink via pyroute2). Reads only."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from ipaddress import IPv4Interface

from pyroute2 import IPRoute

__all__ = ["Interface", "InterfaceError", "inspect_interface"]

IFF_UP = 0x1


class InterfaceError(Exception):
    """The named interface does not exist or cannot be read."""


@dataclass(frozen=True)
class Interface:
    """State of one interface: administratively up, carrier, addresses."""

    name: str
    index: int
    mac: str
    admin_up: bool
    carrier: bool
    operstate: str
    addresses: tuple[IPv4Interface, ...]

    @property
    def usable(self) -> bool:
        """Up with a link: a down port or an unplugged cable sends nothing anywhere."""
        return self.admin_up and self.carrier and self.operstate not in ("DOWN", "LOWERLAYERDOWN", "NOTPRESENT")


def inspect_interface(name: str) -> Interface:
    """Read one interface's state; raises InterfaceError if there is no such interface."""
    try:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=name)
            if not found:
                raise InterfaceError(f"没有接口 {name} / no such interface: {name}")
            link = ipr.get_links(found[0])[0]
            addrs = ipr.get_addr(index=found[0], family=socket.AF_INET)
    except InterfaceError:
        raise
    except Exception as exc:  # noqa: BLE001 - netlink errors of any kind become one clear line
        raise InterfaceError(f"无法读取接口 {name} / cannot read interface {name}: {exc}") from None
    return Interface(
        name=name,
        index=found[0],
        mac=(link.get_attr("IFLA_ADDRESS") or "").lower(),
        admin_up=bool(link["flags"] & IFF_UP),
        carrier=bool(link.get_attr("IFLA_CARRIER", 1)),
        operstate=str(link.get_attr("IFLA_OPERSTATE") or "UNKNOWN"),
        addresses=tuple(IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}") for a in addrs),
    )
