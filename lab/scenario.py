"""Scenario files: what café to build, and the ground truth that follows.

A scenario is YAML (``lab/scenarios/NAME.yaml``). Terminals are described by
a numbering rule plus per-machine overrides, so a file stays short at 1,000
machines yet every deviation from the rule is written down.  Keys reserved
for later parts of the lab (second router, rogue DHCP, servers, cameras, SSH
log server, SNMP agent, foreign device) sit at the top level beside these.
"""

from __future__ import annotations

import hashlib
import ipaddress
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


class TerminalOverride(_Strict):
    number: int = Field(ge=0)
    address: IPv4Address | None = None
    name: str | None = None
    netbios: bool | None = None
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
        for net_ in (net, self.isp.subnet):
            if not _in_lab_ranges(net_):
                raise ValueError(f"{net_} is outside the lab's ranges (DESIGN.md section 2)")
        return self

    @property
    def profile_path(self) -> Path:
        base = self.source.parent if self.source else _scenario_dir()
        return (base / self.profile).resolve()

    def router_mac(self) -> str:
        return _mac(ROUTER_OUI, self.terminals.seed, "router")

    def build_terminals(self) -> list[Terminal]:
        """Apply the numbering rule and the overrides; deterministic per seed."""
        spec = self.terminals
        overrides = {o.number: o for o in spec.overrides}
        blocked = _blocked_icmp(spec)
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
                icmp=(number not in blocked) if o.icmp is None else o.icmp,
            ))
        if overrides:
            raise ScenarioError(f"overrides name machines that do not exist: {sorted(overrides)}")
        self._check_addresses(terminals)
        return terminals

    def _check_addresses(self, terminals: list[Terminal]) -> None:
        taken = {self.lan.probe: "probe", self.lan.router: "router"}
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


def _blocked_icmp(spec: TerminalsSpec) -> set[int]:
    """Machines whose (Windows) firewall drops ICMP echo, chosen by hash."""
    chosen = set()
    for i in range(spec.count):
        number = spec.first_number + i
        h = int.from_bytes(hashlib.sha256(f"{spec.seed}:icmp:{number}".encode()).digest()[:4], "big")
        if h / 2**32 < spec.icmp_blocked_share:
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


def lan_interface(scenario: Scenario, address: IPv4Address) -> IPv4Interface:
    """An address with the LAN's prefix length, as configured on a lab host."""
    return ipaddress.ip_interface(f"{address}/{scenario.lan.subnet.prefixlen}")  # type: ignore[return-value]
