"""The probe's interfaces as the kernel reports them (netlink via pyroute2): their state now, and a watch on
their carrier. Reads only (CarrierWatch may set a port administratively up when asked)."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Interface
from typing import Any

from pyroute2 import IPRoute, IPRSocket
from pyroute2.netlink.rtnl import RTMGRP_LINK

__all__ = ["Interface", "InterfaceError", "inspect_interface", "link_usable", "CarrierWatch", "LINK_LOST"]

IFF_UP = 0x1
LINK_LOST = "网吧网线已断开（无载波）/ café link lost its carrier"


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
        return _carrier_usable(self.admin_up, self.carrier, self.operstate)


def _carrier_usable(admin_up: bool, carrier: bool, operstate: str) -> bool:
    return admin_up and carrier and operstate not in ("DOWN", "LOWERLAYERDOWN", "NOTPRESENT")


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


# ---------------------------------------------------------------------------------------------- carrier watch

def link_usable(msg: Any) -> bool:
    """A netlink link message says carrier, judged as :attr:`Interface.usable` judges it."""
    return _carrier_usable(bool(msg["flags"] & IFF_UP), bool(msg.get_attr("IFLA_CARRIER", 1)),
                           str(msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN"))


class CarrierWatch:
    """The carrier of one interface, kept current by the kernel's link notifications on a watcher thread.

    ``losses`` counts carrier losses since the watch began, so a cable pulled
    and plugged back while nobody looked still shows (a run's stage during
    such a blink gathered from a dead link). ``bring_up`` sets the interface
    administratively up first (a down port never reports carrier).
    """

    def __init__(self, iface: str, *, bring_up: bool = False, on_change: Callable[[bool], None] | None = None) -> None:
        self.iface = iface
        self.losses = 0
        self.raised = False
        self._carrier = False
        self._on_change = on_change
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._bring_up = bring_up
        # One netlink socket, used only by the watcher thread: subscribe first, then read the state, so
        # no change can fall between the reading and the first notification.
        self._thread = threading.Thread(target=self._watch, name=f"carrier-{iface}", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        if not self._ready.is_set():
            raise OSError(f"无法监视接口 {iface} / cannot watch interface {iface}: netlink did not answer")

    @property
    def carrier(self) -> bool:
        """Whether the interface has carrier now (as last notified)."""
        with self._cond:
            return self._carrier

    def _set(self, carrier: bool) -> None:
        with self._cond:
            changed = carrier != self._carrier
            if changed and not carrier:
                self.losses += 1
            self._carrier = carrier
            self._cond.notify_all()
        if changed and self._on_change is not None:
            self._on_change(carrier)

    def _watch(self) -> None:
        # IPRSocket: a plain netlink socket outside pyroute2's event loop, so select() sees every message;
        # IPRoute (its own socket) only reads the state once, after the subscription is in place.
        try:
            sock = IPRSocket()
            sock.bind(groups=RTMGRP_LINK)
        except Exception as exc:  # noqa: BLE001 - handed to the constructor as one error
            self._error = OSError(f"无法打开 netlink / cannot open netlink: {exc}")
            self._ready.set()
            return
        try:
            with IPRoute() as ipr:
                found = ipr.link_lookup(ifname=self.iface)
                if not found:
                    raise OSError(f"没有接口 {self.iface} / no such interface: {self.iface}")
                index = found[0]
                link = ipr.get_links(index)[0]
                if self._bring_up and not link["flags"] & IFF_UP:
                    ipr.link("set", index=index, state="up")
                    self.raised = True
                    link = ipr.get_links(index)[0]
            self._carrier = link_usable(link)
        except Exception as exc:  # noqa: BLE001 - handed to the constructor as one error
            self._error = exc if isinstance(exc, OSError) else OSError(
                f"无法读取接口 {self.iface} / cannot read interface {self.iface}: {exc}")
            sock.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._closing.is_set():
                # select() wakes on a notification or every half second to notice close(); nothing is asked.
                readable, _, _ = select.select([sock], [], [], 0.5)
                if not readable:
                    continue
                for msg in sock.get():
                    if msg.get("index") != index:
                        continue
                    if msg.get("event") == "RTM_NEWLINK":
                        self._set(link_usable(msg))
                    elif msg.get("event") == "RTM_DELLINK":
                        self._set(False)
        except Exception as exc:  # noqa: BLE001 - the watch ends; waiters see no carrier
            self._error = exc
            self._set(False)
        finally:
            sock.close()

    def lost(self, since: int = 0) -> str | None:
        """LINK_LOST when the carrier is down now or was lost after ``since`` losses had been counted, else None.

        A run's stop check: ``execute(..., stop=watch.lost)``.
        """
        with self._cond:
            return LINK_LOST if self.losses != since or not self._carrier else None

    def wait(self, carrier: bool, timeout: float | None = None, cancel: threading.Event | None = None) -> bool:
        """Block until the carrier is ``carrier``; False on ``timeout`` (seconds) or when ``cancel`` is set."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._carrier != carrier:
                if cancel is not None and cancel.is_set():
                    return False
                left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> None:
        """Stop watching and close the netlink socket."""
        self._closing.set()
        self._thread.join(timeout=3)
