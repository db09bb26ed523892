"""Observations: everything the collectors saw, saved whole in observations.json.

Collectors fill these models and never judge; checks read them and never do
I/O. A saved file re-evaluates to the same findings (``cafe-probe evaluate``).
"""

from __future__ import annotations

from datetime import date, datetime
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
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
    passes: list[SweepRound] = Field(default_factory=list, description="per pass: asked, newly answered, seconds")
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


class DhcpServerMessage(BaseModel):
    """A DHCP server's answer to any client (OFFER, ACK or NAK), heard passively during the run.

    One per (server id, source MAC, message type): the first one heard.
    """

    time: float = Field(description="seconds since the run started")
    server_id: IPv4Address | None = Field(description="option 54; None when the server left it out")
    source_mac: str = Field(description="Ethernet source of the message's frame")
    source_ip: IPv4Address = Field(description="IPv4 source of the message's frame")
    message_type: int = Field(description="option 53: 2 OFFER, 5 ACK, 6 NAK")
    client_mac: str = Field(description="chaddr: the client answered")
    routers: list[IPv4Address] = Field(default_factory=list, description="option 3")


class ForwardingHop(BaseModel):
    """One step past a forwarder while following it: who sent time-exceeded at this TTL."""

    ttl: int
    address: IPv4Address | None = Field(description="source of the ICMP time-exceeded; None when nothing answered")


class Forwarder(BaseModel):
    """A live host that forwarded a packet addressed to the external target."""

    address: IPv4Address = Field(description="the host's LAN address, from the sweep")
    mac: str
    how: Literal["ttl_exceeded", "tcp_answer"] = Field(
        description="ttl_exceeded: it answered the TTL-1 packet with ICMP time-exceeded; "
                    "tcp_answer: the target's SYN-ACK or RST came back through it")
    answered_from: IPv4Address = Field(description="source of the time-exceeded, or of the TCP answer")
    rtt_ms: float
    path: list[ForwardingHop] = Field(default_factory=list, description="hops past it, TTL 2 upwards, when followed")

    @property
    def egress(self) -> IPv4Address | None:
        """The first address past this forwarder that answered: the line it leads onto."""
        return next((hop.address for hop in self.path if hop.address is not None), None)


class ForwardingTest(BaseModel):
    """Which live hosts route to the outside: TTL-1 framed to each, then one SYN to the silent ones."""

    target: IPv4Address
    port: int = Field(description="TCP port of the target used by every probe packet")
    hosts: int = Field(description="live hosts tested")
    ttl1_sent: int = 0
    syn_enabled: bool
    syn_sent: int = 0
    follow_hops: int = Field(description="how far each forwarder was followed (0: not followed)")
    follow_sent: int = 0
    forwarders: list[Forwarder] = Field(default_factory=list)
    seconds: float = 0.0


class ForeignArpAnswer(BaseModel):
    """A host that answered an ARP request for an address outside the café's subnets."""

    address: IPv4Address
    mac: str
    asked_as: Literal["probe", "own_address"] = Field(
        description="probe: the request had sender 0.0.0.0 (RFC 5227); own_address: the probe's own address")


class ForeignArpProbe(BaseModel):
    """ARP requests for common router addresses of private ranges (rules/), and who answered."""

    asked: list[IPv4Address]
    answers: list[ForeignArpAnswer] = Field(default_factory=list)
    seconds: float = 0.0


class GatewayAnswer(BaseModel):
    """A host that answered the identification's ARP probe for a staged venue's registered gateway."""

    address: IPv4Address
    mac: str
    count: int = Field(description="replies heard from this (address, MAC)")


class ArpSender(BaseModel):
    """An (address, MAC) pair heard as the sender of any ARP packet."""

    address: IPv4Address
    mac: str


class VenueSignals(BaseModel):
    """What a just-plugged café port said before the probe knew the venue (probe/net/identify.py).

    Only ARP (RFC 5227 probes, sender 0.0.0.0) and DHCP DISCOVERs were sent; no lease, no address.
    """

    interface: str
    probe_mac: str
    asked: list[IPv4Address] = Field(default_factory=list, description="registered gateways asked by ARP")
    gateway_answers: list[GatewayAnswer] = Field(default_factory=list)
    offers: list[DhcpOffer] = Field(default_factory=list)
    heard: list[ArpSender] = Field(default_factory=list, description="ARP senders heard, up to a cap")
    heard_dropped: int = Field(default=0, description="ARP senders heard beyond the cap, counted only")
    frames_sent: int = Field(default=0, description="ARP requests and DHCP DISCOVERs sent")
    seconds: float = 0.0


class VenueIdentification(BaseModel):
    """How a headless probe decided which staged venue it was plugged into (probe/venue_match.py)."""

    signals: VenueSignals
    candidates: list[str] = Field(default_factory=list, description="the staged venues it chose among")
    outcome: Literal["match", "none", "ambiguous"]
    chosen: str | None = None
    reason: str
    seconds: float = 0.0


class SnmpInterface(BaseModel):
    """One row of IF-MIB ifTable joined with ifXTable and the interface's IPv4 addresses (IP-MIB)."""

    index: int
    name: str | None = Field(default=None, description="ifName, else ifDescr")
    descr: str | None = None
    type: int | None = Field(default=None, description="ifType (IANAifType): 6 ethernetCsmacd, 24 softwareLoopback, …")
    admin_up: bool | None = None
    oper_up: bool | None = None
    speed_mbps: int | None = Field(default=None, description="ifHighSpeed, else ifSpeed / 10⁶")
    mac: str | None = None
    addresses: list[IPv4Interface] = Field(default_factory=list)


class SnmpRoute(BaseModel):
    """One IPv4 route of the device's routing table."""

    destination: IPv4Network
    next_hop: IPv4Address | None = None
    if_index: int | None = None
    table: Literal["inetCidrRouteTable", "ipCidrRouteTable", "ipRouteTable"]


class SnmpBridgeEntry(BaseModel):
    """One learned entry of a switch's forwarding table (BRIDGE-MIB dot1dTpFdbTable or Q-BRIDGE)."""

    mac: str
    port: int = Field(description="bridge port number")
    if_index: int | None = Field(default=None, description="the port's ifIndex (dot1dBasePortIfIndex)")
    status: int | None = Field(default=None, description="3 learned, 4 self, 5 mgmt (dot1dTpFdbStatus)")


class SnmpDevice(BaseModel):
    """What one SNMP target of the profile answered, or why it could not be read."""

    address: IPv4Address
    role: Literal["router", "switch", "other"]
    version: Literal["2c", "3"]
    ok: bool
    error: Literal["timeout", "auth", "no_access", "credentials_unreadable", "protocol", "network"] | None = None
    error_detail: str | None = None
    sys_descr: str | None = None
    sys_name: str | None = None
    interfaces: list[SnmpInterface] = Field(default_factory=list)
    routes: list[SnmpRoute] = Field(default_factory=list)
    bridge: list[SnmpBridgeEntry] = Field(default_factory=list)
    truncated: bool = Field(default=False, description="a table was cut at the collector's row cap")
    seconds: float = 0.0


class OpenPort(BaseModel):
    """A port that answered: a TCP connect that succeeded, or a UDP probe that got a datagram back."""

    port: int
    transport: Literal["tcp", "udp"] = "tcp"
    banner: str | None = Field(default=None, description="the answer, bounded; bytes outside printable ASCII as \\xNN")
    banner_bytes: int = Field(default=0, description="bytes read (at most the collector's cap)")
    probed: bool = Field(default=False, description="a signature's probe payload was sent before reading")
    rtt_ms: float = Field(description="time to connect (TCP) or to the answer (UDP)")


class ServiceHost(BaseModel):
    """What one live host showed on the scanned ports."""

    address: IPv4Address
    mac: str
    open: list[OpenPort] = Field(default_factory=list)
    closed: list[int] = Field(default_factory=list, description="TCP ports that answered with a reset")
    filtered: list[int] = Field(default_factory=list, description="TCP ports with no answer in time (a firewall drops)")


class SignatureMatch(BaseModel):
    """A signature that fitted what a host showed on a port."""

    address: IPv4Address
    mac: str
    port: int
    transport: Literal["tcp", "udp"] = "tcp"
    signature: str = Field(description="signature id")
    role: str
    product: str | None = None
    confidence: float
    confirmed: bool
    origin: Literal["rules", "profile"] = Field(description="shipped in rules/ or added by the venue profile")


class ServiceScan(BaseModel):
    """The service scan over the live hosts and the signatures' ports."""

    tcp_ports: list[int]
    udp_ports: list[int] = Field(default_factory=list)
    hosts: list[ServiceHost] = Field(default_factory=list)
    matches: list[SignatureMatch] = Field(default_factory=list)
    signatures: list[str] = Field(default_factory=list, description="ids of the signatures in effect")
    signatures_sha256: str = Field(description="of the effective signature set (probe.signatures.signatures_sha256)")
    max_concurrent: int = Field(description="the cap on connections open at once")
    connect_rate: float = Field(description="the cap on new connections per second")
    peak_concurrent: int = Field(default=0, description="the most connections that were open at once")
    connections: int = Field(default=0, description="TCP connects attempted, retries included")
    seconds: float = 0.0


class Camera(BaseModel):
    """A camera or NVR, and every way it answered."""

    address: IPv4Address
    mac: str | None = None
    how: list[Literal["ws-discovery", "rtsp", "sadp", "dhip"]] = Field(default_factory=list)
    types: list[str] = Field(default_factory=list, description="WS-Discovery Types (e.g. dn:NetworkVideoTransmitter)")
    scopes: list[str] = Field(default_factory=list, description="WS-Discovery Scopes (onvif://www.onvif.org/…)")
    xaddrs: list[str] = Field(default_factory=list, description="WS-Discovery service addresses")
    rtsp_status: int | None = Field(default=None, description="status code of the RTSP OPTIONS answer")
    rtsp_server: str | None = Field(default=None, description="the Server header of that answer")
    model: str | None = Field(default=None, description="device model or type, from vendor discovery")
    serial: str | None = None


class CameraProblem(BaseModel):
    """An answer that could not be parsed, kept with the parser's reason."""

    address: IPv4Address
    how: Literal["ws-discovery", "rtsp", "sadp", "dhip"]
    error: str


class CameraSurvey(BaseModel):
    """WS-Discovery, vendor discovery and RTSP OPTIONS over the LAN."""

    probes_sent: int = 0
    rtsp_checked: int = 0
    cameras: list[Camera] = Field(default_factory=list)
    problems: list[CameraProblem] = Field(default_factory=list)
    seconds: float = 0.0


class DayRange(BaseModel):
    """Consecutive days, both ends included."""

    first: date
    last: date


class LogFolderRead(BaseModel):
    """One log folder of a source: what was listed, and the days its files cover (never judged here)."""

    path: str
    name_pattern: str | None = None
    recursive: bool = False
    ok: bool = True
    error: Literal["missing", "not_a_folder", "permission", "too_many", "timeout", "io"] | None = None
    error_detail: str | None = None
    files: int = Field(default=0, description="regular files listed")
    dated_by_name: int = 0
    dated_by_content: int = Field(default=0, description="undated names dated from their first and last lines")
    undated: int = Field(default=0, description="files no date could be read from")
    covered: list[DayRange] = Field(default_factory=list, description="days with at least one record, merged")
    oldest: date | None = None
    newest: date | None = None
    listing_sha256: str | None = Field(
        default=None, description="SHA-256 of the canonical listing: one line per file, name, size, mtime")
    bytes_read: int = Field(default=0, description="file content read to date undated names (first/last bytes)")


class LogSourceRead(BaseModel):
    """One log source of the profile (a server over SFTP, or a local folder offline)."""

    address: IPv4Address | None = Field(default=None, description="None for an offline folder")
    port: int | None = None
    username: str | None = None
    ok: bool
    error: Literal["host_key_mismatch", "auth", "refused", "timeout", "unreachable", "protocol",
                   "credentials_unreadable", "cancelled"] | None = None
    error_detail: str | None = None
    host_key_seen: str | None = Field(default=None, description="'<type> <base64>' the server showed")
    host_key_pinned: bool = Field(default=False, description="the profile pinned a key and it matched")
    folders: list[LogFolderRead] = Field(default_factory=list)
    seconds: float = 0.0


class ProbeInfo(BaseModel):
    """Who and where the probe was."""

    interface: str
    mac: str
    address: IPv4Address
    prefixlen: int


class ClockCheck(BaseModel):
    """The probe's clock when the run started: a report's times are evidence.

    ``synchronised`` is the kernel's own verdict (adjtimex: NTP or another
    discipline holds the clock), None where it cannot be read.
    ``device_offset`` is the inspector device's clock minus the probe's, in
    seconds, measured over the officer link (None: the device was not
    reachable); ``ok`` is the self-test's verdict against ``tolerance``.
    """

    checked_at: datetime
    synchronised: bool | None = None
    device_url: str | None = None
    device_offset: float | None = None
    device_rtt: float | None = None
    tolerance: float
    ok: bool
    reason: str = ""


class Interruption(BaseModel):
    """Why and where a run stopped before its end (the café link lost, a stop asked)."""

    at: datetime
    stage: str
    reason: str
    stages_done: list[str] = Field(default_factory=list)


class LinkCounts(BaseModel):
    """What the run's raw link did: frames sent and received, sends tried again, frames given up."""

    sent: int = 0
    received: int = 0
    send_retries: int = Field(default=0, description="sends tried again after ENOBUFS/ENETDOWN with the carrier up")
    send_dropped: int = Field(default=0, description="frames given up after their tries (re-asked by the collector)")


class RunInfo(BaseModel):
    """Run metadata: ids, times with their UTC offset, inputs' digests.

    ``complete`` is False when the run was interrupted (``interrupted`` says
    where and why); such a run keeps what it gathered, and its report is
    marked incomplete, never a clean report.
    """

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
    interrupted: Interruption | None = None
    clock: ClockCheck | None = None
    task_pack: str | None = Field(default=None, description="id of the staged task pack the run came from")
    link: LinkCounts = Field(default_factory=LinkCounts)


class Observations(BaseModel):
    """Everything one run observed."""

    schema_version: Literal["cafe-probe.observations/1"] = SCHEMA_VERSION
    run: RunInfo
    arp: ArpSweep
    passive_arp: PassiveArp = Field(default_factory=PassiveArp)
    netbios: NetbiosSurvey = Field(default_factory=NetbiosSurvey)
    dhcp_hostnames: list[DhcpHostname] = Field(default_factory=list)
    dhcp: DhcpDiscovery | None = Field(default=None, description="None when the discovery did not run")
    forwarding: ForwardingTest | None = Field(default=None, description="None when the test did not run")
    foreign_arp: ForeignArpProbe | None = Field(default=None, description="None when the probe did not run")
    snmp: list[SnmpDevice] = Field(default_factory=list)
    services: ServiceScan | None = Field(default=None, description="None when the scan did not run")
    cameras: CameraSurvey | None = Field(default=None, description="None when the survey did not run")
    logs: list[LogSourceRead] | None = Field(default=None, description="None when the log sources were not read")
    dhcp_server_messages: list[DhcpServerMessage] = Field(
        default_factory=list, description="DHCP server answers to any client, heard passively for the whole run")
    identification: VenueIdentification | None = Field(
        default=None, description="autorun: why the probe took itself to be in this venue (capture: identify.pcap)")
