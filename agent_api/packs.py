"""Task packs, department side: the signing key and the export of one probe's pack for a drawn round.

A pack (probe.taskpack, the contract) carries, for the venues a draw gave the
officers who take this probe, each venue's stored profile
(agent_api.venue_profiles) and its secret files sealed to the probe's
enrolled key, the team's badge numbers, the task, the inspector device to
report to and its pinned key, the ruleset and a validity window, all signed
by the department key.

The department key (``DATA/department.key``, made on first use) is not the
agent's receipt key ``agent.key`` on purpose: the receipt key says "this
device received the report", the department key says "the department sent
these probes to these venues"; a device that only receives reports need not
be able to issue packs, and either key can be replaced without the other.

Every export is one ``pack.export`` audit entry (pack id, probe, task,
venues, badges, window, digests), which ``cafe-agent pack list`` reads back;
no secret is ever in it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent_api import ApiError
from agent_api.app import Agent
from agent_api.audit import now, record
from agent_api.cases import ruleset
from agent_api.db import AuditEntry, Probe
from agent_api.dept_tables import Draw, DrawVenue
from agent_api.draws import get_draw, team
from agent_api.settings import Settings
from agent_api.venue_profiles import get_profile
from probe.dsse import parse_envelope
from probe.keys import KeyFileError, generate_key_files, key_id, load_private_key, parse_public_key, public_line
from probe.taskpack import (PackAgent, PackIssuer, PackPayload, PackProbe, PackRefused, PackRuleset, PackTask,
                            PackVenue, seal_secrets, sign_pack)

__all__ = ["EXPORT_ACTION", "ExportedPack", "department_key", "export_pack", "exported_packs", "default_window"]

EXPORT_ACTION = "pack.export"
_DRAWN = ("drawn", "published")


@dataclass(frozen=True)
class ExportedPack:
    """A signed pack: its id, the envelope bytes to hand to the technician, the SHA-256 of the signed payload (what
    the probe shows for a staged pack) and the venue ids in it, with the window it is valid in and the whole signed
    payload (its venues' names and teams, for the summary shown to the technician)."""

    pack_id: str
    envelope: bytes
    sha256: str
    venues: list[str]
    probe_id: str
    task: str
    not_before: datetime
    not_after: datetime
    payload: PackPayload


def department_key(settings: Settings) -> Ed25519PrivateKey:
    """The department's signing key, made on first use (``department.key`` 0600 and ``department.pub``).

    Half a pair is an error, never overwritten: probes pin the public key, and a
    new pair would make them refuse every pack until re-pinned.
    """
    private, public = settings.department_key_path, settings.department_pub_path
    if not private.exists() and not public.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        generate_key_files(private, public)
    elif not private.exists() or not public.exists():
        raise KeyFileError(f"{settings.data_dir}: department.key 与 department.pub 须同时存在 / department.key and "
                           "department.pub must both exist (restore the missing one; a new pair would need every "
                           "probe re-pinned)")
    key = load_private_key(private)
    if key_id(parse_public_key(public.read_bytes())) != key_id(key.public_key()):
        raise KeyFileError(f"{public} 与 {private} 不是一对 / {public} is not the public half of {private}")
    return key


def default_window(draw: Draw, settings: Settings) -> tuple[datetime, datetime]:
    """The check period of the draw: its first day 00:00 to the day after its last 00:00, in the configured zone."""
    zone = settings.zone
    return (datetime.combine(draw.check_start, time(0), zone),
            datetime.combine(draw.check_end + timedelta(days=1), time(0), zone))


def _window(db: Session, draw: Draw, settings: Settings, not_before: datetime | None,
            not_after: datetime | None) -> tuple[datetime, datetime]:
    start, end = default_window(draw, settings)
    start, end = not_before or start, not_after or end
    if start.utcoffset() is None or end.utcoffset() is None:
        raise ApiError(422, "bad_window", "有效期须带时区 / the validity times must carry their UTC offset")
    if end <= start:
        raise ApiError(422, "bad_window", f"有效期为空：{start.isoformat()} 至 {end.isoformat()} / the validity "
                                          f"window is empty: {start.isoformat()} to {end.isoformat()}")
    if end <= now(db):
        raise ApiError(422, "bad_window", f"有效期已结束（{end.isoformat()}）/ the validity window is already over "
                                          f"({end.isoformat()})")
    return start, end


def _agent(agent: Agent, url: str, public_key: str | None) -> PackAgent:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(422, "bad_agent_url", f"检查设备地址须为 http(s) URL / the inspector device's address must be "
                                             f"an http(s) URL: {url!r}")
    try:
        key = parse_public_key(public_key) if public_key is not None else agent.key.public_key()
    except KeyFileError as exc:
        raise ApiError(422, "bad_agent_key", f"检查设备公钥 / inspector device key: {exc}") from None
    return PackAgent(url=url.rstrip("/"), public_key=public_line(key), key_id=key_id(key))


def _probe(db: Session, probe_id: str) -> Probe:
    probe = db.execute(select(Probe).where(Probe.probe_id == probe_id)).scalar_one_or_none()
    if probe is None:
        raise ApiError(404, "unknown_probe", f"探针未登记（cafe-agent enroll-probe）/ probe not enrolled: {probe_id}")
    if probe.revoked_at is not None:
        raise ApiError(409, "probe_revoked", f"探针密钥已于 {probe.revoked_at.isoformat()} 吊销 / the key of probe "
                                             f"{probe_id} was revoked at {probe.revoked_at.isoformat()}")
    return probe


def _picks(draw: Draw, badges: list[str]) -> list[DrawVenue]:
    """The draw's active picks whose team includes any of ``badges``; refuses a badge that is on no team."""
    active = sorted((p for p in draw.venues if p.active), key=lambda p: p.id)
    on_teams = {badge for pick in active for badge in team(pick)}
    strangers = [b for b in badges if b not in on_teams]
    chosen = [p for p in active if set(team(p)) & set(badges)]
    if not chosen:
        raise ApiError(409, "no_venue", f"任务 {draw.task_number} 中没有分配给 {', '.join(badges)} 的场所 / no venue of "
                                        f"task {draw.task_number} is assigned to {', '.join(badges)}")
    if strangers:
        raise ApiError(409, "badge_not_drawn", f"以下警号不在任务 {draw.task_number} 的任何检查组中 / not on any team of "
                                               f"task {draw.task_number}: {', '.join(strangers)}")
    return chosen


def _venues(db: Session, settings: Settings, picks: list[DrawVenue], probe: Probe) -> list[PackVenue]:
    """Each pick's pack entry; refuses, listing every venue at once, when any lacks a usable stored profile."""
    probe_key = parse_public_key(probe.public_key)
    problems: list[str] = []
    venues: list[PackVenue] = []
    for pick in picks:
        venue = pick.venue
        where = f"{venue.credit_code}（{venue.name}）"
        if not venue.site_id:
            problems.append(f"{where}: 名录中未填场所编号 / no site id (场所编号) in the registry")
            continue
        try:
            stored = get_profile(settings, venue.site_id)
            secrets = stored.secret_files()
        except ApiError as exc:
            problems.append(f"{where}: {exc.message}")
            continue
        except (PackRefused, OSError) as exc:
            problems.append(f"{where}: 档案 {venue.site_id} 的密钥文件 / secret files of {venue.site_id}: {exc}")
            continue
        code = stored.profile.venue.credit_code
        if code and code != venue.credit_code:
            problems.append(f"{where}: 档案 {venue.site_id} 的信用代码为 {code}，与名录不符 / the stored profile's "
                            f"credit code differs from the registry's")
            continue
        venues.append(PackVenue(venue_id=venue.site_id, name=venue.name, credit_code=venue.credit_code,
                                inspectors=team(pick), profile_yaml=stored.text, profile_sha256=stored.sha256,
                                secret_paths=sorted(secrets),
                                secrets_sealed=seal_secrets(secrets, probe_key) if secrets else None))
    if problems:
        raise ApiError(409, "pack_refused", "无法导出任务包 / cannot export the pack:\n"
                       + "\n".join(f"  {p}" for p in problems))
    return venues


def export_pack(db: Session, agent: Agent, *, task: str, probe_id: str, badges: list[str], agent_url: str,
                agent_public_key: str | None = None, not_before: datetime | None = None,
                not_after: datetime | None = None, actor: str) -> ExportedPack:
    """Make, sign and audit the pack of ``task`` for probe ``probe_id`` carried by the officers ``badges``; commits.

    The draw must be drawn or published; its active picks whose team includes
    any of the badges are the venues, each with a stored profile under its
    registry site id. The validity window defaults to the check period
    (:func:`default_window`); ``agent_public_key`` (PEM or ``ed25519:`` line)
    to this agent's own receipt key. Refusals are ApiError: 404 unknown task or
    probe, 409 not drawn, revoked, no venue for the badges, a venue without a
    usable profile (all listed), 422 bad input.
    """
    badges = list(dict.fromkeys(b.strip() for b in badges if b.strip()))
    if not badges:
        raise ApiError(422, "no_badges", "须给出至少一个警号 / at least one badge number is required")
    draw = get_draw(db, task)
    if draw.state not in _DRAWN:
        raise ApiError(409, "draw_state", f"任务 {draw.task_number} 尚未抽取（{draw.state}）/ task {draw.task_number} "
                                          f"is not drawn yet ({draw.state})")
    settings: Settings = agent.settings
    probe = _probe(db, probe_id)
    start, end = _window(db, draw, settings, not_before, not_after)
    pack_agent = _agent(agent, agent_url, agent_public_key)
    venues = _venues(db, settings, _picks(draw, badges), probe)
    signing = department_key(settings)
    rules = ruleset()
    payload = PackPayload(
        pack_id=PackPayload.new_id(), issued_at=now(db), not_before=start, not_after=end,
        issuer=PackIssuer(name=(draw.authority or draw.plan.authority or "cafe-agent")[:200],
                          key_id=key_id(signing.public_key())),
        probe=PackProbe(id=probe.probe_id, key_id=probe.key_id),
        task=PackTask(id=draw.task_number, name=draw.task_name, check_type=draw.check_type,
                      check_start=draw.check_start.isoformat(), check_end=draw.check_end.isoformat()),
        agent=pack_agent, ruleset=PackRuleset(version=rules.version, sha256=rules.sha256), venues=venues)
    try:
        envelope = sign_pack(payload, signing)
    except PackRefused as exc:
        raise ApiError(422, "pack_refused", str(exc)) from None
    digest = hashlib.sha256(parse_envelope(envelope)[1]).hexdigest()
    ids = [v.venue_id for v in venues]
    record(db, actor, EXPORT_ACTION, f"pack:{payload.pack_id}",
           {"pack_id": payload.pack_id, "probe_id": probe.probe_id, "probe_key_id": probe.key_id,
            "task": draw.task_number, "badges": badges, "venues": ids, "sha256": digest,
            "file_sha256": hashlib.sha256(envelope).hexdigest(), "not_before": start.isoformat(),
            "not_after": end.isoformat(), "agent_url": pack_agent.url, "agent_key_id": pack_agent.key_id,
            "issuer_key_id": payload.issuer.key_id, "ruleset": {"version": rules.version, "sha256": rules.sha256}})
    db.commit()
    return ExportedPack(pack_id=payload.pack_id, envelope=envelope, sha256=digest, venues=ids,
                        probe_id=probe.probe_id, task=draw.task_number, not_before=start, not_after=end,
                        payload=payload)


def exported_packs(db: Session) -> list[tuple[str, dict]]:
    """Every export recorded in the audit log, oldest first: (when, the entry's detail)."""
    rows = db.execute(select(AuditEntry).where(AuditEntry.action == EXPORT_ACTION).order_by(AuditEntry.seq)).scalars()
    return [(entry.at, json.loads(entry.detail)) for entry in rows]
