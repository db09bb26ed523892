"""Scenario files: what café to build, and the ground truth that follows.

A scenario is YAML (``lab/scenarios/NAME.yaml``). Terminals are described by
a numbering rule plus per-machine overrides, so a file stays short at 1,000
machines yet every deviation from the rule is written down. Beside them:

* ``router``: the registered router: SNMP agent (real snmpd), a second WAN
  line, ICMP dropped;
* ``routers``: more forwarding routers on the LAN, NATed to the main or the
  second ISP (``isp2``, 198.51.100.0/24), optionally silent in ICMP;
* ``rogue_dhcp``: more dnsmasq servers on the LAN (inside an extra router
  when the address is one);
* ``foreign``: devices with addresses outside the café's subnets, silent or
  chatty (ARP for a gateway that never answers, as a misplugged device does).

Keys for later parts of the lab (servers, cameras, SSH log server) will sit
at the top level beside these.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
from importlib import resources
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "Scenario",
    "ScenarioError",
    "Terminal",
    "load_scenario",
    "scenario_names",
]

# NIC vendors common in café PCs (onboard LAN of the usual board makers).
DEFAULT_OUIS = ["00:e0:4c", "d8:bb:c1", "b4:2e:99", "04:92:26", "1c:69:7a", "f4:b5:20"]
ROUTER_OUI = "00:0e:c6"  # lab MACs for infrastructure stay fixed per scenario
FOREIGN_OUI = "50:64:2b"  # a consumer-router maker's block, as a self-made LAN's box would carry


class ScenarioError(Exception):
    """A scenario file that cannot be built, with the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LanSpec(_Strict):
    subnet: IPv4Network
    probe: IPv4Address
    router: IPv4Address
    dhcp_range: tuple[IPv4Address, IPv4Address]


class SwitchSpec(_Strict):
    loss_percent: float = Field(default=0.0, ge=0, lt=100)


class IspSpec(_Strict):
    subnet: IPv4Network = IPv4Network("203.0.113.0/24")
    router_wan: IPv4Address = IPv4Address("203.0.113.2")
    gateway: IPv4Address = IPv4Address("203.0.113.1")
    hosts: list[IPv4Address] = Field(default_factory=lambda: [IPv4Address("203.0.113.80")])


class SecondIspSpec(_Strict):
    subnet: IPv4Network = IPv4Network("198.51.100.0/24")
    gateway: IPv4Address = IPv4Address("198.51.100.1")


class MainRouterSpec(_Strict):
    """The registered router: what it runs besides NAT and the legal DHCP server."""

    snmp: Literal["off", "v2c", "v3"] = "off"
    second_wan: bool = Field(default=False, description="a second up WAN line to isp2, with its own default route")
    icmp: bool = True


class RouterSpec(_Strict):
    """A further forwarding router plugged into the café switch."""

    address: IPv4Address
    isp: Literal["main", "second"] = "second"
    icmp: bool = Field(default=True, description="false: drops every ICMP packet it would send itself")


class RogueDhcpSpec(_Strict):
    """A DHCP server the venue did not register (in the extra router of that address, if there is one)."""

    address: IPv4Address
    range: tuple[IPv4Address, IPv4Address]
    router: IPv4Address | None = Field(default=None, description="router option offered; default: itself")


class ForeignSpec(_Strict):
    """A device with an address outside the café's subnets."""

    address: IPv4Interface
    chatter_to: IPv4Address | None = Field(
        default=None, description="sends to this (absent) gateway every `interval` s, so its kernel keeps ARPing")
    interval: float = Field(default=1.0, gt=0, le=60)


class TerminalOverride(_Strict):
    number: int = Field(ge=0)
    address: IPv4Address | None = None
    name: str | None = None
    netbios: bool | None = None
    dhcp_name: bool | None = None
    power: Literal["on", "off"] | None = None
    icmp: bool | None = None


class TerminalsSpec(_Strict):
    count: int = Field(ge=0, le=4000)
    first_number: int = Field(default=1, ge=0)
    first_address: IPv4Address
    name_format: str = "WB-{number:03d}"
    seed: int = 1
    ouis: list[str] = Field(default_factory=lambda: list(DEFAULT_OUIS))
    icmp_blocked_share: float = Field(default=0.0, ge=0, le=1)
    dhcp_name_share: float = Field(default=0.0, ge=0, le=1,
                                   description="share of terminals announcing their name in DHCPINFORM (option 12)")
    dhcp_interval: float = Field(default=2.0, gt=0, le=600, description="seconds between a terminal's DHCPINFORMs")
    overrides: list[TerminalOverride] = Field(default_factory=list)


class Terminal(BaseModel):
    """One simulated PC as built, and as the truth reports it."""

    number: int
    name: str
    address: IPv4Address
    expected_address: IPv4Address
    mac: str
    power: Literal["on", "off"]
    netbios: bool
    dhcp_name: bool
    icmp: bool

    @property
    def mismatch(self) -> bool:
        return self.address != self.expected_address


class Scenario(_Strict):
    name: str
    description: str = ""
    profile: str
    lan: LanSpec
    switch: SwitchSpec = Field(default_factory=SwitchSpec)
    isp: IspSpec = Field(default_factory=IspSpec)
    terminals: TerminalsSpec
    router: MainRouterSpec = Field(default_factory=MainRouterSpec)
    isp2: SecondIspSpec = Field(default_factory=SecondIspSpec)
    routers: list[RouterSpec] = Field(default_factory=list)
    rogue_dhcp: list[RogueDhcpSpec] = Field(default_factory=list)
    foreign: list[ForeignSpec] = Field(default_factory=list)

    # Where the file came from, so the profile beside it can be found.
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _addresses_fit(self) -> "Scenario":
        net = self.lan.subnet
        for label, addr in (("lan.probe", self.lan.probe), ("lan.router", self.lan.router),
                            ("terminals.first_address", self.terminals.first_address),
                            ("lan.dhcp_range", self.lan.dhcp_range[0]),
                            ("lan.dhcp_range", self.lan.dhcp_range[1])):
            if addr not in net:
                raise ValueError(f"{label} {addr} is outside lan.subnet {net}")
        for label, addr in [*((f"routers[{i}].address", r.address) for i, r in enumerate(self.routers)),
                            *((f"rogue_dhcp[{i}].address", d.address) for i, d in enumerate(self.rogue_dhcp)),
                            *((f"rogue_dhcp[{i}].range", a) for i, d in enumerate(self.rogue_dhcp) for a in d.range)]:
            if addr not in net:
                raise ValueError(f"{label} {addr} is outside lan.subnet {net}")
        for net_ in (net, self.isp.subnet, self.isp2.subnet, *(f.address.network for f in self.foreign)):
            if not _in_lab_ranges(net_):
                raise ValueError(f"{net_} is outside the lab's ranges (DESIGN.md section 2)")
        for i, f in enumerate(self.foreign):
            if f.address.network.overlaps(net):
                raise ValueError(f"foreign[{i}].address {f.address} is inside lan.subnet {net}")
            if f.chatter_to is not None and f.chatter_to not in f.address.network:
                raise ValueError(f"foreign[{i}].chatter_to {f.chatter_to} is outside {f.address.network}")
        if len(self.routers) > 20 or len(self.rogue_dhcp) > 20 or len(self.foreign) > 20:
            raise ValueError("at most 20 each of routers, rogue_dhcp and foreign")
        return self

    @property
    def uses_isp2(self) -> bool:
        return self.router.second_wan or any(r.isp == "second" for r in self.routers)

    @property
    def profile_path(self) -> Path:
        base = self.source.parent if self.source else _scenario_dir()
        return (base / self.profile).resolve()

    def router_mac(self) -> str:
        return _mac(ROUTER_OUI, self.terminals.seed, "router")

    def extra_router_mac(self, k: int) -> str:
        return _mac(ROUTER_OUI, self.terminals.seed, f"router{k}")

    def rogue_dhcp_mac(self, k: int) -> str:
        return _mac(ROUTER_OUI, self.terminals.seed, f"dhcp{k}")

    def foreign_mac(self, k: int) -> str:
        return _mac(FOREIGN_OUI, self.terminals.seed, f"foreign{k}")

    def wan_address(self, k: int, isp: Literal["main", "second"]) -> IPv4Address:
        """The WAN address of extra router k on its ISP's subnet."""
        net = self.isp.subnet if isp == "main" else self.isp2.subnet
        return net.network_address + 10 + k

    def build_terminals(self) -> list[Terminal]:
        """Apply the numbering rule and the overrides; deterministic per seed."""
        spec = self.terminals
        overrides = {o.number: o for o in spec.overrides}
        blocked = _chosen(spec, "icmp", spec.icmp_blocked_share)
        announcing = _chosen(spec, "dhcp-name", spec.dhcp_name_share)
        terminals: list[Terminal] = []
        macs: set[str] = set()
        for i in range(spec.count):
            number = spec.first_number + i
            expected = spec.first_address + i
            o = overrides.pop(number, None) or TerminalOverride(number=number)
            mac = _mac(spec.ouis[number % len(spec.ouis)], spec.seed, str(number))
            if mac in macs:  # a 24-bit collision: derive again, still deterministic
                mac = _mac(spec.ouis[number % len(spec.ouis)], spec.seed, f"{number}+")
            macs.add(mac)
            terminals.append(Terminal(
                number=number,
                name=o.name if o.name is not None else spec.name_format.format(number=number),
                address=o.address or expected,
                expected_address=expected,
                mac=mac,
                power=o.power or "on",
                netbios=True if o.netbios is None else o.netbios,
                dhcp_name=(number in announcing) if o.dhcp_name is None else o.dhcp_name,
                icmp=(number not in blocked) if o.icmp is None else o.icmp,
            ))
        if overrides:
            raise ScenarioError(f"overrides name machines that do not exist: {sorted(overrides)}")
        self._check_addresses(terminals)
        return terminals

    def _check_addresses(self, terminals: list[Terminal]) -> None:
        taken = {self.lan.probe: "probe", self.lan.router: "router"}
        for i, r in enumerate(self.routers):
            if r.address in taken:
                raise ScenarioError(f"routers[{i}]: {r.address} already used by {taken[r.address]}")
            taken[r.address] = f"routers[{i}]"
        for i, d in enumerate(self.rogue_dhcp):
            if d.address in taken and not taken[d.address].startswith("routers["):
                raise ScenarioError(f"rogue_dhcp[{i}]: {d.address} already used by {taken[d.address]}")
            taken.setdefault(d.address, f"rogue_dhcp[{i}]")
        for t in terminals:
            if t.power == "off":
                continue
            if t.address not in self.lan.subnet or t.address in (
                self.lan.subnet.network_address, self.lan.subnet.broadcast_address):
                raise ScenarioError(f"machine {t.number}: {t.address} is not a host of {self.lan.subnet}")
            if t.address in taken:
                raise ScenarioError(f"machine {t.number}: {t.address} already used by {taken[t.address]}")
            taken[t.address] = f"machine {t.number}"


def _in_lab_ranges(net: IPv4Network) -> bool:
    allowed = [IPv4Network(n) for n in ("198.18.0.0/15", "203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24")]
    return any(net.subnet_of(a) for a in allowed)


def _mac(oui: str, seed: int, key: str) -> str:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return oui.lower() + ":" + ":".join(f"{b:02x}" for b in digest[:3])


def _chosen(spec: TerminalsSpec, trait: str, share: float) -> set[int]:
    """Machines that have ``trait`` (a firewall dropping ICMP echo, a DHCP name…), chosen by hash."""
    chosen = set()
    for i in range(spec.count):
        number = spec.first_number + i
        h = int.from_bytes(hashlib.sha256(f"{spec.seed}:{trait}:{number}".encode()).digest()[:4], "big")
        if h / 2**32 < share:
            chosen.add(number)
    return chosen


def _scenario_dir() -> Path:
    return Path(str(resources.files("lab") / "scenarios"))


def scenario_names() -> list[str]:
    """Names of the scenarios shipped in lab/scenarios/."""
    return sorted(p.stem for p in _scenario_dir().glob("*.yaml") if not p.stem.endswith(".profile"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a shipped scenario by name, or any scenario file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = _scenario_dir() / f"{name_or_path}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"no such scenario: {name_or_path} (shipped: {', '.join(scenario_names())})") from None
    except (OSError, UnicodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: the top level must be a mapping")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ScenarioError(f"{path}:\n  " + "\n  ".join(lines)) from None
    scenario.source = path.resolve()
    return scenario


SNMP_V3_USER = "cafeprobe"
LAB_SECRETS = ("snmp.community", "snmp-v3.auth", "snmp-v3.priv")


def stage_profile(scenario: Scenario, dest: Path) -> tuple[Path, dict[str, str]]:
    """Stage the scenario's profile as a technician would: a copy, with fresh secrets beside it.

    The profile names its secret files relative to itself (``secrets/…``); they
    are written here with mode 0600 and new random values each time, so no
    credential of the lab lives in the repository. Returns the staged
    profile's path and the secrets (for the lab's own daemons).
    """
    secret_dir = dest / "secrets"
    secret_dir.mkdir(parents=True, exist_ok=True)
    secret_dir.chmod(0o700)
    values = {name: secrets.token_urlsafe(18) for name in LAB_SECRETS}
    for name, value in values.items():
        path = secret_dir / name
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
    staged = dest / scenario.profile_path.name
    staged.write_bytes(scenario.profile_path.read_bytes())
    return staged, values


def lan_interface(scenario: Scenario, address: IPv4Address) -> IPv4Interface:
    """An address with the LAN's prefix length, as configured on a lab host."""
    return ipaddress.ip_interface(f"{address}/{scenario.lan.subnet.prefixlen}")  # type: ignore[return-value]
