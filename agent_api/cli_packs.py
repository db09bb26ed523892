"""``cafe-agent profile | pack``: the stored venue profiles and the task packs made from them.

Registered on agent_api.cli's app; every command takes ``--data`` and
``--db`` like the others and says what is wrong on stderr (exit status 1). No
command prints a secret: profiles are shown by their names, digests and the
names of their secret files, packs by their ids and digests.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from agent_api import ApiError
from agent_api.audit import CLI
from agent_api.cli_common import DataOpt, DbOpt, fail, opened
from agent_api.packs import department_key, exported_packs, export_pack
from agent_api.settings import Settings
from agent_api.venue_profiles import (StoredProfile, add_profile, get_profile, list_profiles,
                                      registry_warnings, remove_profile)
from probe.keys import KeyFileError, key_id, public_line
from probe.report import write_atomic

__all__ = ["profile_app", "pack_app"]

profile_app = typer.Typer(no_args_is_help=True, help="场所档案库 / the stored venue profiles task packs are made "
                                                     "from (add, list, show, remove).")
pack_app = typer.Typer(no_args_is_help=True, help="任务包 / task packs for pre-staged probes (department key, "
                                                  "export, list).")

VenueArg = Annotated[str, typer.Argument(help="场所编号（档案的 venue.id）/ venue id (the profile's venue.id)")]


def _describe(stored: StoredProfile) -> None:
    venue = stored.profile.venue
    typer.echo(f"场所 / venue: {stored.venue_id}  {venue.name}  信用代码 / credit code: {venue.credit_code or '-'}")
    typer.echo(f"档案 / profile: {stored.path}  SHA-256 {stored.sha256}")
    secrets = ", ".join(stored.secret_paths) or "无 / none"
    typer.echo(f"密钥文件（仅列名称）/ secret files (names only): {secrets}")


# --- profiles -----------------------------------------------------------------------------------------------------

@profile_app.command("add")
def profile_add(path: Annotated[Path, typer.Argument(help="场所档案 YAML / the venue profile")],
                replace: Annotated[bool, typer.Option("--replace", help="替换已存档案（记入审计日志）/ replace the "
                                                                        "stored profile of this venue (audited)")]
                = False,
                data: DataOpt = None, db: DbOpt = None) -> None:
    """校验并存入场所档案及其密钥文件 / Check a venue profile and store a private copy with its secret files."""
    with opened(data, db) as agent, agent.sessions() as session:
        added = add_profile(session, agent.settings, path, actor=CLI, replace=replace)
    typer.echo(("已替换 / replaced" if added.replaced_sha256 else "已存入 / stored") + f": {added.stored.venue_id}")
    _describe(added.stored)
    if added.replaced_sha256:
        typer.echo(f"原档案 / previous: SHA-256 {added.replaced_sha256}")
    for line in added.warnings:
        typer.echo(f"注意 / warning: {line}", err=True)


@profile_app.command("list")
def profile_list(data: DataOpt = None, db: DbOpt = None) -> None:
    """列出已存档案 / List the stored venue profiles (and whether the registry links to each)."""
    with opened(data, db) as agent, agent.sessions() as session:
        ids = list_profiles(agent.settings)
        if not ids:
            typer.echo("没有已存档案 / no stored profiles")
        for venue_id in ids:
            try:
                stored = get_profile(agent.settings, venue_id)
            except ApiError as exc:
                typer.echo(f"{venue_id}  不可用 / unusable: {exc.message.splitlines()[-1].strip()}")
                continue
            linked = "名录未关联 / not in registry" if registry_warnings(session, stored.profile) else "名录已关联 / in registry"
            typer.echo(f"{venue_id}  {stored.profile.venue.name}  {stored.sha256[:16]}…  "
                       f"密钥文件 / secrets: {len(stored.secret_paths)}  {linked}")


@profile_app.command("show")
def profile_show(venue_id: VenueArg, data: DataOpt = None, db: DbOpt = None) -> None:
    """显示一个已存档案（不显示密钥内容）/ Show one stored profile (secret files by name only)."""
    with opened(data, db) as agent, agent.sessions() as session:
        stored = get_profile(agent.settings, venue_id)
        _describe(stored)
        for line in list(stored.profile.warnings) + registry_warnings(session, stored.profile):
            typer.echo(f"注意 / warning: {line}", err=True)


@profile_app.command("remove")
def profile_remove(venue_id: VenueArg, data: DataOpt = None, db: DbOpt = None) -> None:
    """删除已存档案及其密钥文件（记入审计日志）/ Remove a stored profile and its secret files (audited)."""
    with opened(data, db) as agent, agent.sessions() as session:
        digest = remove_profile(session, agent.settings, venue_id, actor=CLI)
    typer.echo(f"已删除 / removed: {venue_id} (SHA-256 {digest})")


# --- packs --------------------------------------------------------------------------------------------------------

@pack_app.command("key")
def pack_key(data: DataOpt = None, db: DbOpt = None) -> None:
    """显示部门签名公钥及编号 / Print the department key's line and key id (cafe-probe pin-department)."""
    try:
        pub = department_key(Settings.from_env(data, db)).public_key()
    except (KeyFileError, OSError) as exc:
        raise fail(str(exc)) from None
    typer.echo(public_line(pub))
    typer.echo(key_id(pub))


def _moment(text: str | None, option: str, settings: Settings) -> datetime | None:
    """An ISO 8601 option's time; without an offset it is in the configured zone."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"{option} 须为 ISO 8601 时间 / must be an ISO 8601 time: {text!r}") from None
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=settings.zone)


def _key_text(value: str | None) -> str | None:
    """``--agent-key``: an ``ed25519:`` line or PEM as given, else the file it names."""
    if value is None or value.startswith(("ed25519:", "-----BEGIN")):
        return value
    try:
        return Path(value).read_text(encoding="ascii")[:4096]
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"无法读取检查设备公钥 / cannot read the inspector device key {value}: {exc}") from None


@pack_app.command("export")
def pack_export(task: Annotated[str, typer.Option("--task", help="任务编号 / task number")],
                probe: Annotated[str, typer.Option("--probe", help="探针编号 / probe id (enrolled)")],
                badge: Annotated[list[str], typer.Option("--badge", help="携带探针的检查人员警号（可重复）/ badge of "
                                                                         "an officer taking the probe (repeat)")],
                agent_url: Annotated[str, typer.Option("--agent-url", help="检查设备地址 / the inspector device's "
                                                                           "URL the probe reports to")],
                out: Annotated[Path, typer.Option("--out", help="任务包文件（0600）/ the pack file (mode 0600)")],
                agent_key: Annotated[str | None, typer.Option(
                    "--agent-key", help="检查设备回执公钥（文件或 ed25519:… 行；默认本机）/ the device's receipt key, "
                                        "a file or an ed25519:… line (default: this agent's)")] = None,
                not_before: Annotated[str | None, typer.Option("--not-before", help="生效时间 / valid from (ISO "
                                                                                    "8601; default: check start)")]
                = None,
                not_after: Annotated[str | None, typer.Option("--not-after", help="失效时间 / valid until (ISO "
                                                                                  "8601; default: day after check "
                                                                                  "end 00:00)")] = None,
                data: DataOpt = None, db: DbOpt = None) -> None:
    """为一台探针导出任务包 / Export one probe's task pack for a drawn round (signed, secrets sealed to the probe)."""
    if not out.parent.is_dir():
        raise fail(f"输出目录不存在 / no such directory: {out.parent}")
    key_text = _key_text(agent_key)
    with opened(data, db) as agent, agent.sessions() as session:
        settings = agent.settings
        pack = export_pack(session, agent, task=task, probe_id=probe, badges=badge, agent_url=agent_url,
                           agent_public_key=key_text, not_before=_moment(not_before, "--not-before", settings),
                           not_after=_moment(not_after, "--not-after", settings), actor=CLI)
    write_atomic(out, pack.envelope, mode=0o600)
    typer.echo(f"已导出 / written: {out} ({len(pack.envelope)} bytes, mode 0600)")
    typer.echo(f"任务包 / pack: {pack.pack_id}  任务 / task: {pack.task}  探针 / probe: {pack.probe_id}")
    typer.echo(f"有效期 / valid: {pack.not_before.isoformat()} – {pack.not_after.isoformat()}")
    typer.echo(f"检查设备 / inspector device: {pack.payload.agent.url}  密钥编号 / key id {pack.payload.agent.key_id}")
    typer.echo(f"场所 / venues ({len(pack.venues)}):")
    for venue in pack.payload.venues:
        typer.echo(f"  {venue.venue_id}  {venue.credit_code}  {venue.name}  检查人员 / team: {', '.join(venue.inspectors)}"
                   f"  密钥文件 / secret files: {len(venue.secret_paths)}")
    typer.echo(f"SHA-256（签名内容 / signed payload）: {pack.sha256}")


@pack_app.command("list")
def pack_list(data: DataOpt = None, db: DbOpt = None) -> None:
    """列出已导出的任务包（取自审计日志）/ List the exported packs, from the audit log."""
    with opened(data, db) as agent, agent.sessions() as session:
        packs = exported_packs(session)
    if not packs:
        typer.echo("尚未导出任务包 / no pack exported yet")
    for at, d in packs:
        typer.echo(f"{at}  {d['pack_id']}  任务 / task {d['task']}  探针 / probe {d['probe_id']}  "
                   f"警号 / badges {', '.join(d['badges'])}  场所 / venues {', '.join(d['venues'])}  "
                   f"有效 / valid {d['not_before']} – {d['not_after']}  SHA-256 {d['sha256'][:16]}…")
