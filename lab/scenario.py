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
  chatty (ARP for a gateway that never answers, as a misplugged device does);
* ``billing``, ``audit``: servers of the lab's fictional products (lab/services.py),
  running or with the service stopped;
* ``cameras``: cameras and NVRs (vendor, ONVIF on or off, RTSP on or off);
* ``log_servers``: servers running Debian's real sshd (lab/sshd.py) with a user
  who logs in with a password and one with a key, their own host key (or one
  the profile does not pin: ``host_key: mismatch``), and log folders generated
  by lab/logs.py (days covered, missing days, dated or undated names).

Terminals run the Windows firewall (``terminals.firewall``) and the lab's
fictional real-name client, except a hash-chosen share
(``terminals.realname_missing_share``); both can be overridden per machine.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import secrets
from importlib import resources
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Literal

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "AuditSpec",
    "BillingSpec",
    "CameraDeviceSpec",
    "LogFolderSpec",
    "LogServerSpec",
    "SSH_WRONG_PASSWORD",
    "Scenario",
    "ScenarioError",
    "Terminal",
    "load_scenario",
    "new_ssh_key",
    "scenario_names",
    "ssh_secret_names",
]

# NIC vendors common in café PCs (onboard LAN of the usual board makers).
DEFAULT_OUIS = ["00:e0:4c", "d8:bb:c1", "b4:2e:99", "04:92:26", "1c:69:7a", "f4:b5:20"]
ROUTER_OUI = "00:0e:c6"  # lab MACs for infrastructure stay fixed per scenario
FOREIGN_OUI = "50:64:2b"  # a consumer-router maker's block, as a self-made LAN's box would carry
SERVER_OUI = "00:1b:21"  # an Intel server NIC, as a café's billing or audit box carries
# Blocks of the camera makers (IEEE registry), so a vendor lookup names them as it would on site.
CAMERA_OUIS = {"hikvision": "c0:56:e3", "dahua": "6c:1c:71", "generic": "6c:f1:7e"}
# The lab's own model names (fictional, as lab.camera_sim's firmware strings), in each maker's naming style.
DEFAULT_MODELS = {("hikvision", "camera"): "DS-LAB-IPC1", ("hikvision", "nvr"): "DS-LAB-NVR8",
                  ("dahua", "camera"): "DH-LAB-IPC2", ("dahua", "nvr"): "DH-LAB-NVR4",
                  ("generic", "camera"): "LAB-IPC-G1", ("generic", "nvr"): "LAB-NVR-G1"}


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


class BillingSpec(_Strict):
    """A billing server of one of the lab's two fictional products."""

    address: IPv4Address
    product: Literal["alpha", "beta"]
    running: bool = Field(default=True, description="false: the host is up, its service stopped (port closed)")


class AuditSpec(_Strict):
    """An audit server of the lab's fictional audit product."""

    address: IPv4Address
    running: bool = Field(default=True, description="false: the host is up, its service stopped (port closed)")


class CameraDeviceSpec(_Strict):
    """A camera or NVR: what it answers (ONVIF WS-Discovery, vendor discovery, RTSP)."""

    address: IPv4Address
    vendor: Literal["hikvision", "dahua", "generic"] = "generic"
    kind: Literal["camera", "nvr"] = "camera"
    onvif: bool = Field(default=True, description="WS-Discovery on (Hikvision ships it off from firmware 5.5)")
    rtsp: bool = Field(default=True, description="RTSP on TCP 554")
    model: str | None = Field(default=None, max_length=64, description="default: a usual model of the vendor")
    serial: str | None = Field(default=None, max_length=64, description="default: derived from the seed")


class LogFolderSpec(_Strict):
    """A log folder of a log server, generated by lab/logs.py relative to the lab's "today"."""

    path: str = Field(min_length=2, max_length=200, description="absolute, as the profile names it")
    name_pattern: str | None = Field(default=None, max_length=100, description="strftime; null with undated")
    days_back: int = Field(ge=1, le=3650, description="days covered up to today (day 0 is today)")
    missing: list[tuple[int, int]] = Field(default_factory=list, description="[from_days_ago, to_days_ago]")
    files_per_day: int = Field(default=1, ge=1, le=500)
    count: int | None = Field(default=None, ge=1, le=50000, description="total files, spread over the days")
    recursive_subdirs: bool = Field(default=False, description="files in one sub-folder per month")
    undated: bool = Field(default=False, description="rotated names without dates; lines carry timestamps")
    days_per_file: int = Field(default=7, ge=1, le=366, description="undated: days a rotated file holds")
    line_format: str = Field(default="%Y-%m-%d %H:%M:%S", max_length=40, description="timestamp of each line")
    base_name: str = Field(default="billing.log", pattern=r"^[A-Za-z0-9_.-]{1,40}$")

    @model_validator(mode="after")
    def _shape(self) -> "LogFolderSpec":
        if not self.path.startswith("/") or ".." in self.path.split("/"):
            raise ValueError(f"path must be absolute, without '..': {self.path!r}")
        if self.undated == (self.name_pattern is not None):
            raise ValueError("give a name_pattern, or undated: true, not both")
        if any(min(a, b) < 0 for a, b in self.missing):
            raise ValueError("missing days are counted back from today, so never negative")
        return self


class LogUsersSpec(_Strict):
    """Who may log in: the lab's password account, its key account, or both (lab/sshd.py).

    sshd looks users up in the system's passwd, so the lab has exactly two
    accounts, shared by every lab; a server lets in those named here.
    """

    password: Literal["cafelab-log"] | None = Field(default=None, description="lab.sshd.PASSWORD_USER")
    key: Literal["cafelab-key"] | None = Field(default=None, description="lab.sshd.KEY_USER")


class LogServerSpec(_Strict):
    """A server keeping logs, read over SFTP: Debian's real sshd on port 22 of its LAN address."""

    address: IPv4Address
    users: LogUsersSpec = Field(default_factory=LogUsersSpec)
    host_key: Literal["match", "mismatch"] = Field(
        default="match", description="mismatch: the staged profile pins another key than the server's")
    folders: list[LogFolderSpec] = Field(default_factory=list, max_length=20)

    @field_validator("folders")
    @classmethod
    def _distinct(cls, folders: list[LogFolderSpec]) -> list[LogFolderSpec]:
        paths = [f.path.rstrip("/") for f in folders]
        for i, p in enumerate(paths):
            if any(q == p or q.startswith(p + "/") for q in paths[:i] + paths[i + 1:]):
                raise ValueError(f"folder {p} is, or holds, another folder of the server")
        return folders


class TerminalOverride(_Strict):
    number: int = Field(ge=0)
    address: IPv4Address | None = None
    name: str | None = None
    netbios: bool | None = None
    dhcp_name: bool | None = None
    power: Literal["on", "off"] | None = None
    icmp: bool | None = None
    realname: bool | None = None
    firewall: bool | None = None


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
    realname_missing_share: float = Field(default=0.0, ge=0, le=1,
                                          description="share of terminals without the real-name client")
    firewall: bool = Field(default=True, description="the Windows firewall: unsolicited packets to closed ports "
                                                     "are dropped, not answered")
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
    realname: bool = True
    firewall: bool = True

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
    billing: list[BillingSpec] = Field(default_factory=list)
    audit: list[AuditSpec] = Field(default_factory=list)
    cameras: list[CameraDeviceSpec] = Field(default_factory=list)
    log_servers: list[LogServerSpec] = Field(default_factory=list)

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
                            *((f"rogue_dhcp[{i}].range", a) for i, d in enumerate(self.rogue_dhcp) for a in d.range),
                            *((f"{key}[{i}].address", a) for key, i, a in self._service_addresses())]:
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
        if max(len(self.routers), len(self.rogue_dhcp), len(self.foreign),
               len(self.billing), len(self.audit), len(self.cameras), len(self.log_servers)) > 20:
            raise ValueError("at most 20 each of routers, rogue_dhcp, foreign, billing, audit, cameras "
                             "and log_servers")
        return self

    def _service_addresses(self) -> list[tuple[str, int, IPv4Address]]:
        """(key, index, address) of every server and camera of the scenario."""
        return ([("billing", i, b.address) for i, b in enumerate(self.billing)]
                + [("audit", i, a.address) for i, a in enumerate(self.audit)]
                + [("cameras", i, c.address) for i, c in enumerate(self.cameras)]
                + [("log_servers", i, s.address) for i, s in enumerate(self.log_servers)])

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

    def billing_mac(self, k: int) -> str:
        return _mac(SERVER_OUI, self.terminals.seed, f"billing{k}")

    def audit_mac(self, k: int) -> str:
        return _mac(SERVER_OUI, self.terminals.seed, f"audit{k}")

    def log_server_mac(self, k: int) -> str:
        return _mac(SERVER_OUI, self.terminals.seed, f"logs{k}")

    def camera_mac(self, k: int) -> str:
        return _mac(CAMERA_OUIS[self.cameras[k - 1].vendor], self.terminals.seed, f"camera{k}")

    def camera_model(self, k: int) -> str:
        c = self.cameras[k - 1]
        return c.model or DEFAULT_MODELS[(c.vendor, c.kind)]

    def camera_serial(self, k: int) -> str:
        """The camera's serial number: as given, else derived from the seed in the vendor's usual shape."""
        c = self.cameras[k - 1]
        if c.serial:
            return c.serial
        digest = hashlib.sha256(f"{self.terminals.seed}:serial{k}".encode()).hexdigest().upper()
        if c.vendor == "hikvision":  # model, production date, a batch code and nine digits
            return f"{self.camera_model(k)}20240612AACH{int(digest[:8], 16) % 10**9:09d}"
        return digest[:15]

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
        without_client = _chosen(spec, "realname", spec.realname_missing_share)
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
                realname=(number not in without_client) if o.realname is None else o.realname,
                firewall=spec.firewall if o.firewall is None else o.firewall,
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
        lo, hi = self.lan.dhcp_range
        for key, i, address in self._service_addresses():
            if lo <= address <= hi:
                raise ScenarioError(f"{key}[{i}]: {address} is inside lan.dhcp_range")
            if address in taken or address in (self.lan.subnet.network_address, self.lan.subnet.broadcast_address):
                raise ScenarioError(f"{key}[{i}]: {address} already used by {taken.get(address, 'the subnet')}")
            taken[address] = f"{key}[{i}]"
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
# A password no lab user has, for the profile's source that must fail to log in.
SSH_WRONG_PASSWORD = "ssh-wrong.pass"
# Where the profile pins log server k's host key; staging writes the real public line there.
HOST_KEY_PLACEHOLDER = re.compile(r"@lab:host_key:(\d{1,2})")


def ssh_secret_names(scenario: Scenario) -> dict[str, str]:
    """The SSH secret files staging writes, by name, and what each holds ("password" or "key").

    Log server k's password user NAME gets ``ssh{k}-NAME.pass``, its key user
    ``ssh{k}-NAME.key`` (an OpenSSH private key); ``ssh-wrong.pass`` holds a
    password of nobody. The profile names them as ``secrets/<name>``.
    """
    names: dict[str, str] = {}
    for k, server in enumerate(scenario.log_servers, start=1):
        if server.users.password:
            names[f"ssh{k}-{server.users.password}.pass"] = "password"
        if server.users.key:
            names[f"ssh{k}-{server.users.key}.key"] = "key"
    if scenario.log_servers:
        names[SSH_WRONG_PASSWORD] = "password"
    return names


def new_ssh_key() -> tuple[bytes, str]:
    """A fresh Ed25519 key: its OpenSSH private key file bytes and its "ssh-ed25519 <base64>" line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def _write_secret(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def stage_profile(scenario: Scenario, dest: Path, host_keys: dict[int, str] | None = None,
                  ssh_password: str | None = None) -> tuple[Path, dict[str, str]]:
    """Stage the scenario's profile as a technician would: a copy, with fresh secrets beside it.

    The profile names its secret files relative to itself (``secrets/…``); they
    are written here with mode 0600 and new random values each time, so no
    credential of the lab lives in the repository: the SNMP secrets, and for
    log servers the SSH passwords and private keys of :func:`ssh_secret_names`.
    A password user's file holds ``ssh_password`` (the lab account's password,
    which every lab shares, see lab/sshd.py) or, with no lab up, a fresh one;
    ``ssh-wrong.pass`` always holds a fresh password of nobody.
    The profile pins log server k's host key as ``"@lab:host_key:k"``; that is
    replaced with ``host_keys[k]`` (the server's public line, which a
    technician would have copied from it), except for a server whose scenario
    says ``host_key: mismatch`` or that ``host_keys`` lacks (no lab up): there
    the pin is a fresh key of no server. Returns the staged profile's path and
    the secrets (for the lab's own daemons; a key user's public line is under
    ``<name>.pub``).
    """
    secret_dir = dest / "secrets"
    secret_dir.mkdir(parents=True, exist_ok=True)
    secret_dir.chmod(0o700)
    values = {name: secrets.token_urlsafe(18) for name in LAB_SECRETS}
    for name, value in values.items():
        _write_secret(secret_dir / name, (value + "\n").encode())
    for name, kind in ssh_secret_names(scenario).items():
        if kind == "password":
            real = ssh_password is not None and name != SSH_WRONG_PASSWORD
            values[name] = ssh_password if real else secrets.token_urlsafe(18)
            _write_secret(secret_dir / name, (values[name] + "\n").encode())
        else:
            private, values[name.removesuffix(".key") + ".pub"] = new_ssh_key()
            _write_secret(secret_dir / name, private)
    staged = dest / scenario.profile_path.name
    staged.write_text(_pin_host_keys(scenario, scenario.profile_path.read_text(encoding="utf-8"), host_keys or {}),
                      encoding="utf-8")
    return staged, values


def _pin_host_keys(scenario: Scenario, text: str, host_keys: dict[int, str]) -> str:
    """The profile text with each host key placeholder replaced by the line to pin."""
    def pin(match: re.Match[str]) -> str:
        k = int(match.group(1))
        if not 1 <= k <= len(scenario.log_servers):
            raise ScenarioError(f"{scenario.profile}: {match.group(0)} names no log server of the scenario")
        if scenario.log_servers[k - 1].host_key == "match" and k in host_keys:
            return host_keys[k]
        return new_ssh_key()[1]
    return HOST_KEY_PLACEHOLDER.sub(pin, text)


def lan_interface(scenario: Scenario, address: IPv4Address) -> IPv4Interface:
    """An address with the LAN's prefix length, as configured on a lab host."""
    return ipaddress.ip_interface(f"{address}/{scenario.lan.subnet.prefixlen}")  # type: ignore[return-value]
