"""Real signed reports for tests: real keys, real findings from the shipped rules, real DSSE signatures."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from probe.evaluate import evaluate
from probe.findings import Status
from probe.keys import generate_key_files, key_id, load_private_key
from probe.observations import (ArpHost, ArpSweep, DhcpHostname, NetbiosAnswer, NetbiosName, NetbiosSurvey,
                                Observations, ProbeInfo, RunInfo)
from probe.profile import parse_profile
from probe.report import (EvidenceFile, ProbeRef, ReportPayload, RulesetRef, TaskRef, VenueRef, new_report_id,
                          sign_report, verify_report)
from probe.rules import load_ruleset

__all__ = ["PROFILE", "VENUE_NAME", "Host", "make_observations", "make_payload", "make_probe_key", "make_report",
           "queue_report", "tamper", "write_run_dir"]

VENUE_NAME = "星际网咖"
PROFILE = """
venue: {id: FZ-MW-0042, name: 星际网咖, licensed_terminals: 3, address: 福州市马尾区测试路1号}
network: {subnets: [198.18.10.0/24], gateways: [198.18.10.1], dhcp_servers: [198.18.10.1]}
terminals: {hostname_pattern: '^WB-(?P<number>\\d+)$', first_address: 198.18.10.101}
"""
TZ = ZoneInfo("Asia/Shanghai")


def make_probe_key(directory: Path, name: str = "probe") -> tuple[Ed25519PrivateKey, Path]:
    """A fresh key pair on disk (private 0600); returns the private key and the public key file."""
    priv, pub = directory / f"{name}.key", directory / f"{name}.pub"
    generate_key_files(priv, pub)
    return load_private_key(priv), pub


Host = tuple[str, str, str | None]  # (address, MAC, NetBIOS name or None)

CAFE_HOSTS: list[Host] = [
    ("198.18.10.1", "02:00:00:00:00:01", None), ("198.18.10.101", "02:00:00:00:01:01", "WB-1"),
    ("198.18.10.102", "02:00:00:00:01:02", "WB-2"), ("198.18.10.140", "02:00:00:00:01:03", "WB-3")]


def make_observations(started: datetime | None = None, *, hosts: list[Host] | None = None,
                      subnet: str = "198.18.10.0/24", probe_address: str = "198.18.10.250",
                      dhcp: Iterable[tuple[str, str]] = ()) -> Observations:
    """Observations of one run on ``subnet``: every host answers the ARP sweep, those with a name NetBIOS too.

    By default a small café on PROFILE's network: gateway, three terminals, one
    on a wrong address (an IP-MAP failure). ``dhcp``: (MAC, hostname) pairs seen
    in DHCP requests.
    """
    started = started or datetime(2026, 11, 24, 10, 0, tzinfo=TZ)
    hosts = CAFE_HOSTS if hosts is None else hosts
    network = IPv4Network(subnet)  # swept: every address but network, broadcast and the probe's own
    return Observations(
        run=RunInfo(run_id="run-1", tool_version="0.1.0", started_at=started,
                    finished_at=started + timedelta(seconds=42), timezone="Asia/Shanghai",
                    profile_sha256="1" * 64, venue_id="FZ-MW-0042", sample_seed=7,
                    probe=ProbeInfo(interface="eth0", mac="02:00:00:00:00:fe", address=IPv4Address(probe_address),
                                    prefixlen=network.prefixlen)),
        arp=ArpSweep(subnets=[network], targets=network.num_addresses - 3, rate_pps=1000, rounds=[], seconds=1,
                     hosts=[ArpHost(address=IPv4Address(a), mac=m, rtt_ms=1, answered_in_round=1)
                            for a, m, _ in hosts]),
        netbios=NetbiosSurvey(queried=len(hosts), answers=[
            NetbiosAnswer(address=IPv4Address(a), mac=m, names=[NetbiosName(name=n, suffix=0, group=False)])
            for a, m, n in hosts if n]),
        dhcp_hostnames=[DhcpHostname(time=1.0, mac=m, hostname=n) for m, n in dhcp],
    )


def make_payload(private_key: Ed25519PrivateKey, obs: Observations | None = None, *, profile_text: str = PROFILE,
                 **overrides: Any) -> ReportPayload:
    """A report payload, findings evaluated by the shipped ruleset on ``profile_text``; any field can be overridden."""
    obs = obs or make_observations()
    ruleset = load_ruleset()
    profile = parse_profile(profile_text, Path("."))
    findings = evaluate(obs, profile, ruleset)
    obs_bytes = json.dumps(obs.model_dump(mode="json"), ensure_ascii=False).encode()
    obs_sha = hashlib.sha256(obs_bytes).hexdigest()
    fields: dict[str, Any] = dict(
        report_id=new_report_id(), run_id=obs.run.run_id,
        probe=ProbeRef(id="probe-test", key_id=key_id(private_key.public_key()), tool_version="0.1.0"),
        venue=VenueRef(id=profile.venue.id, name=profile.venue.name, credit_code=None,
                       address=profile.venue.address),
        task=TaskRef(id="FZ-2026-11-007", inspectors=["350100123", "350100456"]),
        started_at=obs.run.started_at, ended_at=obs.run.finished_at, timezone=obs.run.timezone, complete=True,
        ruleset=RulesetRef(version=ruleset.version, sha256=ruleset.sha256), profile_sha256="1" * 64,
        observations_sha256=obs_sha,
        evidence=[EvidenceFile(name="observations.json", sha256=obs_sha, size=len(obs_bytes))],
        findings=findings, counts={s: sum(f.status is s for f in findings) for s in Status})
    fields.update(overrides)
    return ReportPayload(**fields)


def make_report(private_key: Ed25519PrivateKey, **overrides: Any):
    """A signed envelope and its verification: ``(envelope_bytes, VerifiedReport)``."""
    payload = make_payload(private_key, **overrides)
    envelope = sign_report(payload, private_key)
    return envelope, verify_report(envelope, {key_id(private_key.public_key()): private_key.public_key()})


def queue_report(home: Any) -> str:
    """A report of an earlier run signed by ``home``'s (a ProbeHome) own key, waiting in its outbox; its id."""
    from probe.outbox import Outbox

    ident = home.identity()
    payload = make_payload(ident.private_key, probe=ProbeRef(id=ident.probe_id, key_id=ident.key_id,
                                                             tool_version="0.1.0"))
    Outbox(home.outbox_path).enqueue(payload.report_id, sign_report(payload, ident.private_key))
    return payload.report_id


def tamper(envelope: bytes, field: str, index: int) -> bytes:
    """The envelope with one bit flipped in byte ``index`` of its ``"payload"`` or its first ``"sig"``."""
    doc = json.loads(envelope)
    target = doc["signatures"][0] if field == "sig" else doc
    raw = bytearray(base64.b64decode(target[field]))
    raw[index % len(raw)] ^= 0x01
    target[field] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(doc).encode()


def write_run_dir(directory: Path, private_key: Ed25519PrivateKey) -> Path:
    """A run directory as ``cafe-probe run`` leaves it: evidence files and report.dsse.json beside them."""
    directory.mkdir(parents=True, exist_ok=True)
    obs = make_observations()
    obs_bytes = json.dumps(obs.model_dump(mode="json"), ensure_ascii=False).encode()
    (directory / "observations.json").write_bytes(obs_bytes)
    (directory / "capture.pcap").write_bytes(bytes(range(256)) * 8)
    entries = []
    for name in ("observations.json", "capture.pcap"):
        data = (directory / name).read_bytes()
        entries.append(EvidenceFile(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
    payload = make_payload(private_key, obs, observations_sha256=entries[0].sha256, evidence=entries)
    path = directory / "report.dsse.json"
    path.write_bytes(sign_report(payload, private_key))
    return path
