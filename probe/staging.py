"""Task packs staged on a probe: stored as received, checked again each time they are read.

``home/staged/<pack_id>.dsse.json`` holds each pack's DSSE envelope exactly as
the department server signed it (mode 0600 in a 0700 directory). Its secrets
stay sealed to the probe's key on disk; they are opened in memory when a pack
is read and reach the disk only in a run's private directory
(:func:`probe.taskpack.write_venue`), never under the home.

Every read verifies again (signature against the department keys pinned *now*,
addressed to this probe, the ruleset this probe judges by, each venue's network
section), so unpinning a department key or updating the probe's rules turns a
staged pack into "refused" with the reason instead of letting it run. A pack
keeps its file after it expires and is listed as expired until removed, so the
technician sees what the probe held.

Staging also pins the pack's inspector device (``agent.json``): the probe
reports to one device, so a pack naming another device is refused while a
pack naming the first one is still valid or yet to be valid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ValidationError

from probe.dsse import EnvelopeError, parse_envelope
from probe.home import HomeError, ProbeHome
from probe.profile import Network
from probe.report import write_atomic
from probe.rules import RulesError, load_ruleset
from probe.taskpack import OpenedPack, PackPayload, PackRefused, PackVenue, open_pack

__all__ = ["Staging", "StagedEntry", "Candidate", "Status", "SKEW", "STAGED_SUFFIX", "venue_network"]

STAGED_SUFFIX = ".dsse.json"
# The probe's clock may be a little off at a window's edge; the same tolerance as open_pack's default.
SKEW = timedelta(minutes=5)
Status = Literal["valid", "expired", "not_yet", "refused"]


@dataclass(frozen=True)
class StagedEntry:
    """One staged pack as the probe judges it at a given moment."""

    pack_id: str
    task_id: str
    task_name: str
    venues: tuple[str, ...]
    not_before: datetime | None
    not_after: datetime | None
    status: Status
    reason: str  # "" when valid; the one-line refusal otherwise
    agent_url: str
    agent_key_id: str
    path: Path


@dataclass(frozen=True)
class Candidate:
    """A venue the probe may be in: its pack, its entry there, and its network section (no secrets read)."""

    pack: OpenedPack
    venue: PackVenue
    network: Network


@dataclass(frozen=True)
class _Checked:
    entry: StagedEntry
    pack: OpenedPack | None  # opened whatever its window, None when refused
    networks: dict[str, Network]


def _refused(path: Path, reason: str) -> _Checked:
    """A stored file that does not open as a pack at all: named by its file."""
    entry = StagedEntry(pack_id=path.name.removesuffix(STAGED_SUFFIX), task_id="", task_name="", venues=(),
                        not_before=None, not_after=None, status="refused", reason=reason, agent_url="",
                        agent_key_id="", path=path)
    return _Checked(entry=entry, pack=None, networks={})


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError("now must carry its UTC offset")
    return now


def venue_network(venue: PackVenue) -> Network:
    """The network section of a venue's profile, validated; PackRefused names the problem.

    Only the ``network:`` mapping is read, so the venue's secret files (which
    the full profile loader wants on disk) stay sealed.
    """
    try:
        doc = yaml.safe_load(venue.profile_yaml)
    except yaml.YAMLError:
        raise PackRefused(f"场所 {venue.venue_id} 的档案不是有效的 YAML / venue {venue.venue_id}: the profile is "
                          "not valid YAML") from None
    section = doc.get("network") if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise PackRefused(f"场所 {venue.venue_id} 的档案缺少 network 部分 / venue {venue.venue_id}: the profile "
                          "has no network: section")
    try:
        return Network.model_validate(section)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in ("network", *first["loc"]))
        raise PackRefused(f"场所 {venue.venue_id} 的网络配置无效 / venue {venue.venue_id}: {where}: "
                          f"{first['msg']}") from None


def _unverified_window(data: bytes) -> tuple[datetime, datetime] | None:
    """The validity window the envelope claims, before any check (only to re-open at a moment inside it)."""
    try:
        _, payload, _ = parse_envelope(data)
        claimed = PackPayload.model_validate_json(payload)
    except (EnvelopeError, ValueError):  # pydantic's ValidationError is a ValueError
        return None
    return claimed.not_before, claimed.not_after


def _check_ruleset(payload: PackPayload, version: str, sha256: str) -> None:
    """Refuse a pack made for other rules than the ones this probe judges by."""
    if payload.ruleset.version != version:
        raise PackRefused(f"任务包要求规则库 {payload.ruleset.version}，本探针为 {version}，判定依据将不同 / pack is for "
                          f"ruleset {payload.ruleset.version}, this probe judges by {version}; update the probe "
                          "or ask for a pack of this ruleset")
    if payload.ruleset.sha256 != sha256:
        raise PackRefused(f"规则库 {version} 内容不符（任务包 {payload.ruleset.sha256[:12]}…，本探针 {sha256[:12]}…）"
                          f" / ruleset {version} differs in content (pack {payload.ruleset.sha256[:12]}…, this probe "
                          f"{sha256[:12]}…)")


def _ruleset() -> tuple[str, str]:
    try:
        rules = load_ruleset()
    except RulesError as exc:
        raise PackRefused(f"本探针规则库无效，无法核对任务包 / this probe's ruleset is invalid; packs cannot be "
                          f"checked against it: {exc.problems[0] if exc.problems else exc}") from None
    return rules.version, rules.sha256


class Staging:
    """The task packs staged in one probe home."""

    def __init__(self, home: ProbeHome) -> None:
        self.home = home

    @property
    def directory(self) -> Path:
        return self.home.staged_path

    def _open(self, data: bytes, now: datetime) -> tuple[OpenedPack, Status, str]:
        """Open ``data`` checking everything. A pack refused only for its window is opened at a moment
        inside it and returned with status "expired" or "not_yet" and the refusal as the reason."""
        ident = self.home.identity()
        trusted = self.home.departments()
        if not trusted:
            raise PackRefused("未登记部门公钥，请先运行 cafe-probe pin-department / no department key pinned; run "
                              "'cafe-probe pin-department --pubkey KEY --name NAME' first")
        try:
            return open_pack(data, trusted, ident.probe_id, ident.private_key, now, SKEW), "valid", ""
        except PackRefused as exc:
            refusal = exc
        window = _unverified_window(data)
        if window is None:
            raise refusal
        not_before, not_after = window
        if now + SKEW < not_before:
            status: Status = "not_yet"
        elif now - SKEW > not_after:
            status = "expired"
        else:
            raise refusal
        # Everything but the time is checked again here; any other fault raises its own reason.
        pack = open_pack(data, trusted, ident.probe_id, ident.private_key, not_before, SKEW)
        return pack, status, str(refusal)

    def _check(self, data: bytes, now: datetime, path: Path, ruleset: tuple[str, str] | PackRefused) -> _Checked:
        """Judge one envelope at ``now``: verified, for this probe's rules and within its window, or why not."""
        try:
            pack, status, reason = self._open(data, now)
        except (PackRefused, HomeError) as exc:
            return _refused(path, str(exc))
        p = pack.payload
        entry = StagedEntry(pack_id=p.pack_id, task_id=p.task.id, task_name=p.task.name,
                            venues=tuple(v.venue_id for v in p.venues), not_before=p.not_before,
                            not_after=p.not_after, status=status, reason=reason, agent_url=p.agent.url.rstrip("/"),
                            agent_key_id=p.agent.key_id, path=path)
        try:
            if isinstance(ruleset, PackRefused):
                raise ruleset
            _check_ruleset(p, *ruleset)
            networks = {v.venue_id: venue_network(v) for v in p.venues}
        except PackRefused as exc:
            return _Checked(entry=replace(entry, status="refused", reason=str(exc)), pack=None, networks={})
        return _Checked(entry=entry, pack=pack, networks=networks)

    def _scan(self, now: datetime | None) -> list[_Checked]:
        moment = _now(now)
        if not self.directory.is_dir():
            return []
        try:
            ruleset: tuple[str, str] | PackRefused = _ruleset()
        except PackRefused as exc:
            ruleset = exc
        found = []
        for path in sorted(self.directory.glob(f"*{STAGED_SUFFIX}")):
            try:
                data = path.read_bytes()
            except OSError as exc:
                found.append(_refused(path, f"无法读取 / cannot read {path}: {exc.strerror}"))
                continue
            found.append(self._check(data, moment, path, ruleset))
        return found

    def entries(self, now: datetime | None = None) -> list[StagedEntry]:
        """Every staged pack with its status at ``now`` (default: the current time), in file name order."""
        return [c.entry for c in self._scan(now)]

    def open_valid(self, now: datetime | None = None) -> list[OpenedPack]:
        """The staged packs valid at ``now``, opened (their secrets in memory only)."""
        return [c.pack for c in self._scan(now) if c.pack is not None and c.entry.status == "valid"]

    def candidates(self, now: datetime | None = None) -> list[Candidate]:
        """Every venue of every pack valid at ``now``, with its network section, for venue identification.

        A venue listed by two valid packs appears twice (once per pack): which
        round runs there is for the caller to decide, not for this list.
        """
        return [Candidate(pack=c.pack, venue=v, network=c.networks[v.venue_id])
                for c in self._scan(now) if c.pack is not None and c.entry.status == "valid"
                for v in c.pack.payload.venues]

    def stage(self, data: bytes, now: datetime | None = None) -> OpenedPack:
        """Verify a pack and store it as received; pins its inspector device. PackRefused/HomeError say why not.

        A pack yet to be valid is staged (technicians stage before the round).
        An expired pack, one failing any check, one for another ruleset, or one
        naming another inspector device than a staged pack still (or yet to
        be) valid is refused, and nothing is stored. Staging the same pack
        again changes nothing.
        """
        moment = _now(now)
        checked = self._check(data, moment, self.directory / f"new{STAGED_SUFFIX}", _ruleset())
        if checked.pack is None or checked.entry.status in ("refused", "expired"):
            raise PackRefused(checked.entry.reason)
        pack, entry = checked.pack, checked.entry
        target = self.directory / f"{entry.pack_id}{STAGED_SUFFIX}"
        conflicts = []
        for other in self._scan(moment):
            o = other.entry
            if o.path == target:
                if other.pack is not None and other.pack.sha256 != pack.sha256:
                    raise PackRefused(f"已暂存同编号但内容不同的任务包 {o.pack_id}，请先移除 / a different pack with "
                                      f"the same id {o.pack_id} is staged; remove it first (cafe-probe stage "
                                      f"--remove {o.pack_id})")
            elif o.status in ("valid", "not_yet") and (o.agent_url, o.agent_key_id) != (entry.agent_url,
                                                                                         entry.agent_key_id):
                conflicts.append(o)
        if conflicts:
            o = conflicts[0]
            ids = " ".join(c.pack_id for c in conflicts)
            raise PackRefused(f"已暂存的任务包 {ids} 指定了另一台检查设备 {o.agent_url}，请先移除 / staged pack(s) "
                              f"{ids} name another inspector device ({o.agent_url}, key {o.agent_key_id[:12]}…) "
                              f"than this pack ({entry.agent_url}); remove them first (cafe-probe stage --remove "
                              "PACK_ID)")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        if not target.exists() or target.read_bytes() != data:
            write_atomic(target, data, mode=0o600)
        self.home.pin_agent(pack.payload.agent.url, pack.payload.agent.public_key)
        return pack

    def remove(self, pack_id: str) -> StagedEntry:
        """Remove one staged pack by its id (or a unique prefix of it); HomeError when there is none."""
        prefix = pack_id.strip().lower()
        hits = [e for e in self.entries() if prefix and e.path.name.startswith(prefix)]
        if not hits:
            raise HomeError(f"没有编号为 {pack_id!r} 的暂存任务包 / no staged pack {pack_id!r} (see cafe-probe stage "
                            "--list)")
        if len(hits) > 1:
            raise HomeError(f"{pack_id!r} 对应多个任务包，请写完整编号 / {pack_id!r} matches {len(hits)} packs; give "
                            "the whole pack id")
        hits[0].path.unlink()
        return hits[0]

    def prune(self, now: datetime | None = None) -> list[StagedEntry]:
        """Remove the packs expired at ``now``; the removed entries."""
        gone = [e for e in self.entries(now) if e.status == "expired"]
        for e in gone:
            e.path.unlink(missing_ok=True)
        return gone
