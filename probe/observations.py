"""Observations: everything the collectors saw, saved whole in observations.json.

Collectors fill these models and never judge; checks read them and never do
I/O. A saved file re-evaluates to the same findings (``cafe-probe evaluate``).
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = "cafe-probe.observations/1"


class ArpHost(BaseModel):
    """One (address, MAC) pair that answered the sweep."""

    address: IPv4Address
    mac: str
    vendor: str | None = None
    rtt_ms: float = Field(description="time from the last request to this address to its reply")
    answered_in_round: int


class ArpConflict(BaseModel):
    """One address claimed by more than one MAC: recorded, never hidden."""

    address: IPv4Address
    macs: list[str]


class SweepRound(BaseModel):
    """One pass over the addresses still silent."""

    round: int
    asked: int
    answered: int
    seconds: float


class ArpSweep(BaseModel):
    """Result of the active ARP sweep."""

    subnets: list[IPv4Network]
    targets: int
    rate_pps: float
    rounds: list[SweepRound]
    hosts: list[ArpHost]
    conflicts: list[ArpConflict] = Field(default_factory=list)
    seconds: float


class ArpPacket(BaseModel):
    """An ARP packet seen by the passive listener (any sender, any op)."""

    time: float = Field(description="seconds since the run started")
    op: int
    eth_src: str
    sender_mac: str
    sender_ip: IPv4Address
    target_mac: str
    target_ip: IPv4Address


class PassiveArp(BaseModel):
    """Every ARP packet seen during the run, up to a cap."""

    packets: list[ArpPacket] = Field(default_factory=list)
    dropped: int = Field(default=0, description="packets seen beyond the cap, counted only")


class NetbiosName(BaseModel):
    """One entry of a node-status answer's name table."""

    name: str
    suffix: int
    group: bool


def machine_name(names: list[NetbiosName]) -> str | None:
    """A host's computer name in its name table: first unique <00>, else first unique <20>, else None.

    <00> is the workstation service every Windows host registers under its
    computer name; <20> (file server) is the fallback for hosts without it.
    Group names are workgroups or domains, never a machine.
    """
    for suffix in (0x00, 0x20):
        for entry in names:
            if not entry.group and entry.suffix == suffix:
                return entry.name
    return None


class NetbiosAnswer(BaseModel):
    """A host's answer to a NetBIOS node-status query."""

    address: IPv4Address
    mac: str
    names: list[NetbiosName]
    unit_id: str | None = Field(default=None, description="MAC the host reports in its statistics")

    @property
    def machine_name(self) -> str | None:
        """The host's own computer name (see :func:`machine_name`)."""
        return machine_name(self.names)


class NetbiosError(BaseModel):
    """A reply that could not be parsed: kept, with the parser's reason."""

    address: IPv4Address
    error: str


class NetbiosSurvey(BaseModel):
    """Result of the node-status queries to the live hosts."""

    queried: int = 0
    rounds: int = 0
    answers: list[NetbiosAnswer] = Field(default_factory=list)
    errors: list[NetbiosError] = Field(default_factory=list)
    seconds: float = 0.0


class DhcpHostname(BaseModel):
    """A host name seen passively in a DHCP message (option 12)."""

    time: float
    mac: str
    hostname: str
    address: IPv4Address | None = Field(
        default=None, description="client or requested address carried by the message"
    )
    message_type: int | None = None


class DhcpOffer(BaseModel):
    """One DHCPOFFER answering the probe's DISCOVER; one per (server id, source MAC)."""

    server_id: IPv4Address | None = Field(description="option 54; None when the server left it out")
    source_mac: str = Field(description="Ethernet source of the offer's frame")
    source_ip: IPv4Address = Field(description="IPv4 source of the offer's frame")
    offered_address: IPv4Address = Field(description="yiaddr")
    routers: list[IPv4Address] = Field(default_factory=list, description="option 3")
    dns: list[IPv4Address] = Field(default_factory=list, description="option 6")
    subnet_mask: IPv4Address | None = Field(default=None, description="option 1")
    lease_seconds: int | None = Field(default=None, description="option 51")
    first_seen: float = Field(description="seconds since the run started")
    copies: int = Field(default=1, description="offers with the same server id and MAC (one per DISCOVER)")


class DhcpDiscovery(BaseModel):
    """Result of the active DHCP discovery: every offer in the window, no lease taken."""

    xid: int
    chaddr: str
    sent: int = Field(description="DISCOVERs sent, all with the same xid and chaddr")
    window_seconds: float
    offers: list[DhcpOffer] = Field(default_factory=list)
    seconds: float = 0.0


class ProbeInfo(BaseModel):
    """Who and where the probe was."""

    interface: str
    mac: str
    address: IPv4Address
    prefixlen: int


class RunInfo(BaseModel):
    """Run metadata: ids, times with their UTC offset, inputs' digests."""

    run_id: str
    tool_version: str
    started_at: datetime
    finished_at: datetime
    timezone: str
    profile_sha256: str
    venue_id: str
    sample_seed: int = Field(description="seed for the terminals drawn for the officers to confirm")
    probe: ProbeInfo
    capture_file: str | None = None
    complete: bool = True


class Observations(BaseModel):
    """Everything one run observed."""

    schema_version: Literal["cafe-probe.observations/1"] = SCHEMA_VERSION
    run: RunInfo
    arp: ArpSweep
    passive_arp: PassiveArp = Field(default_factory=PassiveArp)
    netbios: NetbiosSurvey = Field(default_factory=NetbiosSurvey)
    dhcp_hostnames: list[DhcpHostname] = Field(default_factory=list)
    dhcp: DhcpDiscovery | None = Field(default=None, description="None when the discovery did not run")
