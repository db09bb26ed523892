"""One inspection run: refuse early with a reason, or collect, evaluate and write the outputs.

Everything that can make a run refuse (profile, rules, interface, address,
subnet size) is checked in :func:`prepare`, before a single frame is sent.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from ipaddress import IPv4Interface
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from probe import __version__
from probe.checks import CHECKS
from probe.evaluate import evaluate, findings_document
from probe.findings import Finding, Status
from probe.home import HomeError, ProbeHome, ProbeIdentity
from probe.iface import LINK_LOST, Interface, InterfaceError, inspect_interface
from probe.logdates import LineFormat, LogDateError, load_line_formats
from probe.net import arp, cameras, netbios, services, snmp, ssh
from probe.net.dhcp import DhcpHostnameListener, DhcpServerListener, discover as dhcp_discover
from probe.net.foreign import ask_router_addresses
from probe.net.forwarding import probe_forwarding
from probe.net.link import LinkError, LinkLost, RawLink, mac_str
from probe.observations import (ArpSweep, CameraSurvey, ClockCheck, DhcpDiscovery, ForwardingTest, Interruption,
                                LinkCounts, LogSourceRead, NetbiosSurvey, Observations, ProbeInfo, RunInfo, ServiceScan,
                                SnmpDevice, VenueIdentification)
from probe.outbox import Outbox, OutboxFull
from probe.profile import ProfileError, VenueProfile, load_profile
from probe.report import (REPORT_FILE, ProbeRef, ReportPayload, RulesetRef, TaskRef, VenueRef, evidence_entries,
                          new_report_id, sign_report, write_atomic)
from probe.rules import Ruleset, RulesError, load_ruleset
from probe.signatures import effective_signatures

__all__ = ["RunOptions", "RunRefused", "Prepared", "Progress", "StageRunner", "StopCheck", "STAGES", "prepare",
           "execute", "finish_run", "incomplete_reason", "sign_run", "write_json", "DEFAULT_TZ", "MAX_PREFIX"]

DEFAULT_TZ = "Asia/Shanghai"
T = TypeVar("T")
MAX_PREFIX = 20  # a /20 (4,094 hosts) is the largest café LAN swept without --allow-large


class RunRefused(Exception):
    """The run cannot start; the message is one line saying why (Chinese / English)."""


@dataclass
class RunOptions:
    """What the officer or the autorun asked for."""

    profile: Path
    iface: str | None
    out: Path
    allow_large: bool = False
    rate: float = 1000.0
    retries: int = 5
    names: bool = True
    dhcp: bool = True
    forwarding: bool = True
    snmp: bool = True
    services: bool = True
    cameras: bool = True
    logs: bool = True
    timezone: str = DEFAULT_TZ
    home: Path | None = None
    task_id: str | None = None
    inspectors: list[str] = field(default_factory=list)
    task_pack: str | None = None       # the staged pack the run came from (autorun)
    clock: ClockCheck | None = None    # the self-test's clock check before the run (autorun)
    identification: VenueIdentification | None = None  # how the autorun recognised the venue


@dataclass
class Prepared:
    """Everything a run needs, validated."""

    profile: VenueProfile
    profile_sha256: str
    ruleset: Ruleset
    interface: Interface
    probe_address: IPv4Interface
    tz: ZoneInfo
    identity: ProbeIdentity
    outbox: Outbox
    log_formats: list[LineFormat] = field(default_factory=list)


def prepare(opts: RunOptions) -> Prepared:
    """Validate inputs and the interface; raise RunRefused with one line on the first problem."""
    if not opts.iface:
        raise RunRefused("必须用 --iface 指定接口 / an interface must be given with --iface")
    try:
        profile = load_profile(opts.profile)
    except ProfileError as exc:
        first = exc.problems[0] if exc.problems else str(exc)
        more = f" (+{len(exc.problems) - 1} more; see 'cafe-probe check-profile')" if len(exc.problems) > 1 else ""
        raise RunRefused(f"场所档案无效 / bad profile: {first}{more}") from None
    try:
        ruleset = load_ruleset()
        ruleset.require_modules(set(CHECKS))
        log_formats = load_line_formats(ruleset.root / "log_formats.yaml")
    except RulesError as exc:
        raise RunRefused(f"规则库无效 / bad ruleset: {'; '.join(exc.problems[:3])}") from None
    except LogDateError as exc:
        raise RunRefused(f"规则库无效 / bad ruleset: log_formats.yaml: {exc}") from None
    try:
        tz = ZoneInfo(opts.timezone)
    except Exception:  # noqa: BLE001 - any unknown zone name is the same user error
        raise RunRefused(f"未知时区 / unknown time zone: {opts.timezone}") from None
    if (opts.out / REPORT_FILE).exists():
        # The evidence beside a signed report is what its digests vouch for: never overwrite it.
        raise RunRefused(f"输出目录 {opts.out} 已有签名报告，请换一个新目录 / {opts.out} already holds a signed report "
                         "and its evidence; choose a new --out")
    home = ProbeHome(opts.home) if opts.home else None
    if home is None:
        raise RunRefused("必须指定探针目录 --home / the probe home (--home or CAFE_PROBE_HOME) must be given")
    try:
        identity = home.identity()
        outbox = Outbox(home.outbox_path)
        outbox.check_room()
    except (HomeError, OutboxFull) as exc:
        raise RunRefused(str(exc)) from None
    try:
        iface = inspect_interface(opts.iface)
    except InterfaceError as exc:
        raise RunRefused(str(exc)) from None
    if not iface.usable:
        raise RunRefused(f"接口 {iface.name} 未启用或未接网线 / interface {iface.name} is down or has no carrier "
                         f"(state {iface.operstate})")
    subnets = profile.network.subnets
    large = [str(s) for s in subnets if s.prefixlen < MAX_PREFIX]
    if large and not opts.allow_large:
        raise RunRefused(f"网段过大 / subnet larger than /{MAX_PREFIX}: {', '.join(large)}; "
                         "add --allow-large if this café really is that big")
    address = _probe_address(profile, iface)
    return Prepared(profile=profile, profile_sha256=hashlib.sha256(opts.profile.read_bytes()).hexdigest(),
                    ruleset=ruleset, interface=iface, probe_address=address, tz=tz, identity=identity,
                    outbox=outbox, log_formats=log_formats)


def _probe_address(profile: VenueProfile, iface: Interface) -> IPv4Interface:
    """The address the probe speaks from: the profile's, else the interface's own inside the café LAN."""
    if profile.network.probe_address is not None:
        return profile.network.probe_address
    if not iface.addresses:
        raise RunRefused(f"接口 {iface.name} 没有 IPv4 地址，档案也未设 network.probe_address / interface "
                         f"{iface.name} has no IPv4 address and the profile sets no network.probe_address")
    inside = [a for a in iface.addresses if any(a.ip in s for s in profile.network.subnets)]
    if not inside:
        raise RunRefused(f"接口地址 {', '.join(map(str, iface.addresses))} 不在档案网段内 / the interface's "
                         f"address is outside the profile's subnets; set network.probe_address")
    return inside[0]


@dataclass
class Progress:
    """Callbacks the CLI uses to show a long run; all optional."""

    stage: Callable[[str], None] = lambda name: None
    sweep: arp.SweepProgress | None = None
    names: Callable[[int, int, int], None] | None = None
    extra: dict = field(default_factory=dict)


StopCheck = Callable[[], str | None]
MONITOR_INTERVAL = 0.2  # how often a running stage's link is looked at
LINK_GRACE = 1.5  # seconds a socket error waits for the port's carrier to be reported lost (PHYs poll ~1 s)
# Stage names in run order; Progress.stage gets them, Interruption.stage and stages_done use them.
STAGES = ("arp", "netbios", "dhcp", "foreign", "forwarding", "snmp", "services", "cameras", "logs")


class StageRunner:
    """Runs a run's stages in order and ends the run early when the café link goes or a stop is asked.

    Whichever comes first ends it: ``stop`` giving a reason (the carrier
    watch's netlink event, SIGTERM), the link's own verdict (a send or
    receive error met a port without carrier, see ``link_down``), or a stage
    failing with :class:`LinkLost` or with a socket error while the port has
    no carrier (checked for up to ``grace`` seconds, as a port going down
    can fail a send before its carrier is reported lost). The stage that was
    running counts as not run and its partial result is discarded; what the
    finished stages gathered is kept and the capture keeps every frame. Any
    other error in a stage is a fault of the probe and is raised.

    While a stage runs, ``cancel`` is set as soon as a reason appears, so a
    stage that would otherwise wait out long timeouts on a dead link (the SFTP
    reads) can give up at once; the others are short and run out their time.
    """

    def __init__(self, stop: StopCheck | None, progress: Progress, tz: ZoneInfo,
                 link_down: StopCheck | None = None, grace: float = LINK_GRACE) -> None:
        self._stop = stop
        self._link_down = link_down
        self._grace = grace
        self._progress = progress
        self._tz = tz
        self.done: list[str] = []
        self.interrupted: Interruption | None = None
        self.cancel = threading.Event()

    def _reason(self) -> str | None:
        reason = self._stop() if self._stop is not None else None
        if not reason and self._link_down is not None:
            reason = self._link_down()
        return reason or None

    def _interrupt(self, stage: str, reason: str) -> None:
        self.interrupted = Interruption(at=datetime.now(self._tz), stage=stage, reason=reason[:400],
                                        stages_done=list(self.done))

    def _check(self, stage: str) -> bool:
        reason = self._reason()
        if reason:
            self._interrupt(stage, reason)
        return bool(reason)

    def _down_after(self, exc: OSError) -> str | None:
        """Why the link is down, waiting up to ``grace`` for a port that is only going down; None if it stays up."""
        deadline = time.monotonic() + self._grace
        while True:
            if reason := self._reason():
                return f"{reason} ({type(exc).__name__}: {exc})"
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def run(self, stage: str, collect: Callable[[], T]) -> T | None:
        """``collect()``'s result, or None when the run is over or the link went while it ran."""
        if self.interrupted is not None or self._check(stage):
            return None
        self._progress.stage(stage)
        finished = threading.Event()
        monitor = threading.Thread(target=self._watch, args=(finished,), name=f"stage-{stage}", daemon=True)
        monitor.start()
        try:
            result = collect()
        except LinkLost as exc:
            self._interrupt(stage, str(exc))
            return None
        except OSError as exc:
            reason = self._down_after(exc)
            if reason is None:
                raise
            self._interrupt(stage, reason)
            return None
        finally:
            finished.set()
            monitor.join()
        if self._check(stage):
            return None
        self.done.append(stage)
        return result

    def _watch(self, finished: threading.Event) -> None:
        while not finished.wait(MONITOR_INTERVAL):
            if self._reason():
                self.cancel.set()
                return


def incomplete_reason(interruption: Interruption | None) -> str:
    """The report's one line on why a run is incomplete ("" for a complete run)."""
    if interruption is None:
        return ""
    return (f"运行在“{interruption.stage}”阶段中断 / interrupted during stage '{interruption.stage}': "
            f"{interruption.reason}")[:500]


def execute(prep: Prepared, opts: RunOptions, progress: Progress | None = None,
            stop: StopCheck | None = None) -> tuple[Observations, list[Finding]]:
    """Collect, evaluate, write observations.json, findings.json and capture.pcap into opts.out.

    ``stop`` is asked between stages (e.g. "the café link lost its carrier");
    when it gives a reason the run ends there as an incomplete run: what the
    finished stages gathered is evaluated, written, signed with
    ``complete=False`` and queued like any report.
    """
    progress = progress or Progress()
    opts.out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(prep.tz)
    pcap = opts.out / "capture.pcap"
    try:
        link = RawLink(prep.interface.name, pcap)
    except LinkError as exc:
        raise RunRefused(str(exc)) from None
    network = prep.profile.network
    stages = StageRunner(stop, progress, prep.tz,
                         link_down=lambda: link.lost or (None if link.carrier() else LINK_LOST))
    with link:
        passive = arp.PassiveArpListener(link)
        dhcp_names = DhcpHostnameListener(link)
        dhcp_servers = DhcpServerListener(link)
        sweep = stages.run("arp", lambda: arp.sweep(link, network.subnets, prep.probe_address.ip, rate=opts.rate,
                                                    retries=opts.retries, progress=progress.sweep))
        live = [(h.address, h.mac) for h in sweep.hosts] if sweep is not None else []
        survey: NetbiosSurvey | None = None
        if opts.names:
            survey = stages.run("netbios", lambda: netbios.survey(link, live, prep.probe_address.ip,
                                                                  progress=progress.names))
        dhcp: DhcpDiscovery | None = None
        if opts.dhcp:
            dhcp = stages.run("dhcp", lambda: dhcp_discover(link, mac_str(link.mac)))
        foreign = stages.run("foreign", lambda: ask_router_addresses(
            link, prep.ruleset.foreign_router_addresses, prep.probe_address.ip, network.subnets))
        forwarding: ForwardingTest | None = None
        if opts.forwarding and network.external_target is not None:
            target = network.external_target
            forwarding = stages.run("forwarding", lambda: probe_forwarding(
                link, live, prep.probe_address.ip, target, port=network.forwarding.port,
                syn=network.forwarding.syn, follow_hops=network.forwarding.follow_hops))
        snmp_devices: list[SnmpDevice] | None = None
        if opts.snmp and prep.profile.servers.snmp:
            # Over the kernel's UDP sockets; the raw link still records every frame of it.
            snmp_devices = stages.run("snmp", lambda: snmp.collect(prep.profile.servers.snmp))
        scan: ServiceScan | None = None
        if opts.services:
            venue = prep.profile.servers.signatures
            signatures = effective_signatures(prep.ruleset.signatures, venue)
            origin = {s.id: "rules" for s in signatures} | {s.id: "profile" for s in venue}
            scan = stages.run("services", lambda: services.scan(live, signatures, origin=origin))
        camera_survey: CameraSurvey | None = None
        if opts.cameras:
            # The scan already knocked on 554 everywhere when a signature uses it: ask only where it was open.
            rtsp_hosts = None if scan is None or cameras.RTSP_PORT not in scan.tcp_ports else [
                h.address for h in scan.hosts
                if any(p.port == cameras.RTSP_PORT and p.transport == "tcp" for p in h.open)]
            camera_survey = stages.run("cameras", lambda: cameras.survey(link, live, prep.probe_address.ip,
                                                                         rtsp_hosts=rtsp_hosts))
        logs: list[LogSourceRead] | None = None
        if opts.logs and prep.profile.servers.log_sources:
            # SFTP, read-only, in profile order; each source bounded in time.
            logs = stages.run("logs", lambda: ssh.read_sources(prep.profile.servers.log_sources,
                                                               formats=prep.log_formats, tz=prep.tz,
                                                               cancel=stages.cancel))
        passive_arp = passive.stop()
        dhcp_seen = dhcp_names.stop()
        dhcp_server_messages = dhcp_servers.stop()
    if sweep is None:
        # The sweep itself did not finish: no host is known, and the checks judge that little.
        sweep = ArpSweep(subnets=network.subnets, targets=0, rate_pps=opts.rate, rounds=[], hosts=[], seconds=0.0)
    obs = Observations(
        run=RunInfo(run_id=str(uuid.uuid4()), tool_version=__version__, started_at=started,
                    finished_at=datetime.now(prep.tz), timezone=str(prep.tz.key), profile_sha256=prep.profile_sha256,
                    venue_id=prep.profile.venue.id, sample_seed=secrets.randbits(63),
                    probe=ProbeInfo(interface=prep.interface.name, mac=prep.interface.mac,
                                    address=prep.probe_address.ip, prefixlen=prep.probe_address.network.prefixlen),
                    capture_file=pcap.name, complete=stages.interrupted is None, interrupted=stages.interrupted,
                    clock=opts.clock, task_pack=opts.task_pack,
                    link=LinkCounts(sent=link.sent, received=link.received, send_retries=link.send_retries,
                                    send_dropped=link.send_dropped)),
        arp=sweep, passive_arp=passive_arp, netbios=survey if survey is not None else NetbiosSurvey(),
        dhcp_hostnames=dhcp_seen, dhcp=dhcp, dhcp_server_messages=dhcp_server_messages, foreign_arp=foreign,
        forwarding=forwarding, snmp=snmp_devices or [], services=scan, cameras=camera_survey, logs=logs,
        identification=opts.identification)
    findings = finish_run(obs, prep, opts)
    return obs, findings


def finish_run(obs: Observations, prep: Prepared, opts: RunOptions) -> list[Finding]:
    """Evaluate, write observations.json and findings.json, sign, and queue the report in the outbox.

    The same for a complete and an interrupted run: an interrupted one is
    judged on what it gathered and its report says ``complete=False``.
    """
    findings = evaluate(obs, prep.profile, prep.ruleset)
    write_json(opts.out / "observations.json", obs.model_dump(mode="json"))
    write_json(opts.out / "findings.json", findings_document(obs, findings, prep.ruleset))
    envelope, report_id = sign_run(obs, findings, prep, opts)
    write_atomic(opts.out / REPORT_FILE, envelope)
    prep.outbox.enqueue(report_id, envelope)
    return findings


# identify.pcap: the autorun's capture while it recognised the venue (absent from a manual run).
EVIDENCE_FILES = ["observations.json", "findings.json", "capture.pcap", "identify.pcap"]


def sign_run(obs: Observations, findings: list[Finding], prep: Prepared, opts: RunOptions) -> tuple[bytes, str]:
    """The signed report of a finished run (its files must already be written in opts.out)."""
    evidence = evidence_entries(opts.out, EVIDENCE_FILES)
    observations = next(e for e in evidence if e.name == "observations.json")
    venue = prep.profile.venue
    payload = ReportPayload(
        report_id=new_report_id(), run_id=obs.run.run_id,
        probe=ProbeRef(id=prep.identity.probe_id, key_id=prep.identity.key_id, tool_version=__version__),
        venue=VenueRef(id=venue.id, name=venue.name, credit_code=venue.credit_code, address=venue.address),
        task=TaskRef(id=opts.task_id, inspectors=list(opts.inspectors)),
        started_at=obs.run.started_at, ended_at=obs.run.finished_at, timezone=obs.run.timezone,
        complete=obs.run.complete, incomplete_reason=incomplete_reason(obs.run.interrupted),
        clock=obs.run.clock, task_pack=obs.run.task_pack,
        ruleset=RulesetRef(version=prep.ruleset.version, sha256=prep.ruleset.sha256),
        profile_sha256=prep.profile_sha256, observations_sha256=observations.sha256, evidence=evidence,
        findings=findings, counts={s: sum(f.status is s for f in findings) for s in Status})
    return sign_report(payload, prep.identity.private_key), payload.report_id


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically: a crash leaves the old file or the new one, never half of one."""
    write_atomic(path, json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8"))
