"""``cafe-agent registry``: import, export and maintain the venue and inspector registries (两库) and conflicts.

A refused import prints every problem, one line each ("第 N 行 [列]: 原因 /
row N [column]: reason"), stores nothing and exits 1.
"""

from __future__ import annotations

from datetime import date
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from agent_api import registry
from agent_api.audit import CLI, now
from agent_api.cli_common import DataOpt, DbOpt, fail, open_session
from agent_api.registry_io import read_upload
from probe.report import write_atomic

registry_app = typer.Typer(no_args_is_help=True, help="两库管理 / the venue and inspector registries and conflicts "
                                                      "(import, export, credit codes, blacklist).")


class Which(str, Enum):
    """Which registry a command works on."""

    venues = "venues"
    inspectors = "inspectors"
    conflicts = "conflicts"


class Listed(str, Enum):
    """What ``list`` shows."""

    venues = "venues"
    inspectors = "inspectors"


class Fmt(str, Enum):
    """Export formats."""

    csv = "csv"
    xlsx = "xlsx"


IMPORTERS = {Which.venues: registry.import_venues, Which.inspectors: registry.import_inspectors,
             Which.conflicts: registry.import_conflicts}
EXPORTERS = {Which.venues: registry.export_venues, Which.inspectors: registry.export_inspectors,
             Which.conflicts: registry.export_conflicts}
CodeArg = Annotated[str, typer.Argument(help="统一社会信用代码 / credit code")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="原因 / reason (recorded)")]
JurisdictionOpt = Annotated[str | None, typer.Option("--jurisdiction", help="属地（辖区代码）/ jurisdiction code")]


@registry_app.command("import")
def import_(which: Annotated[Which, typer.Argument(help="venues | inspectors | conflicts")],
            file: Annotated[Path, typer.Argument(help="CSV（UTF-8 或 GB18030）或 XLSX 文件 / CSV or XLSX file")],
            data: DataOpt = None, db: DbOpt = None) -> None:
    """导入名录（全部通过才保存）/ Import a registry file: all rows valid, or nothing stored."""
    try:
        content = read_upload(file)
    except OSError as exc:
        raise fail(f"无法读取 / cannot read {file}: {exc}") from None
    with open_session(data, db) as session:
        try:
            summary = IMPORTERS[which](session, content, file.name, CLI)
        except registry.ImportRefused as refused:
            for problem in refused.problems:
                typer.echo(str(problem), err=True)
            raise fail(refused.message) from None
    typer.echo(f"已导入 / imported {file.name}: 新增 / added {summary.added}, 更新 / updated {summary.updated}, "
               f"未变 / unchanged {summary.unchanged}")
    for code in summary.flagged:
        typer.echo(f"校验码不符，待人工确认 / check character mismatch, to be confirmed: {code} "
                   f"(cafe-agent registry confirm-code {code} --note ...)")


@registry_app.command()
def export(which: Annotated[Which, typer.Argument(help="venues | inspectors | conflicts")],
           fmt: Annotated[Fmt, typer.Option("--format", help="csv | xlsx")],
           out: Annotated[Path, typer.Option("--out", help="输出文件 / output file")],
           jurisdiction: JurisdictionOpt = None, data: DataOpt = None, db: DbOpt = None) -> None:
    """导出名录（中文表头，可再导入）/ Export a registry (Chinese headers; re-imports unchanged)."""
    with open_session(data, db) as session:
        content = EXPORTERS[which](session, fmt.value, jurisdiction)
    write_atomic(out, content)
    typer.echo(f"已导出 / written: {out} ({len(content)} bytes)")


@registry_app.command("confirm-code")
def confirm_code(code: CodeArg, note: Annotated[str, typer.Option("--note", help="核对说明 / how it was checked")],
                 data: DataOpt = None, db: DbOpt = None) -> None:
    """确认校验码不符的统一社会信用代码 / Confirm a credit code whose check character does not match."""
    with open_session(data, db) as session:
        venue = registry.confirm_credit_code(session, code, CLI, note)
        typer.echo(f"已确认 / confirmed: {venue.credit_code} ({venue.name})")


def _on(text: str | None, session_today: date) -> date:
    if text is None:
        return session_today
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise fail(f"日期应为 YYYY-MM-DD / date must be YYYY-MM-DD: {text}") from None


@registry_app.command()
def blacklist(code: CodeArg, reason: ReasonOpt,
              on: Annotated[str | None, typer.Option("--on", help="列入日期 / date (YYYY-MM-DD, default today)")] = None,
              data: DataOpt = None, db: DbOpt = None) -> None:
    """列入黑名单 / Put a venue on the blacklist (credit history and audit log record it)."""
    with open_session(data, db) as session:
        venue = registry.get_venue(session, code)
        if venue.blacklisted:
            typer.echo(f"已在黑名单中 / already blacklisted: {venue.credit_code} ({venue.blacklist_reason})")
            return
        venue = registry.set_blacklist(session, code, True, reason, _on(on, now(session).date()), CLI)
        typer.echo(f"已列入黑名单 / blacklisted: {venue.credit_code} ({venue.name})")


@registry_app.command()
def unblacklist(code: CodeArg, reason: ReasonOpt, data: DataOpt = None, db: DbOpt = None) -> None:
    """移出黑名单 / Take a venue off the blacklist, with the reason."""
    with open_session(data, db) as session:
        venue = registry.get_venue(session, code)
        if not venue.blacklisted:
            typer.echo(f"不在黑名单中 / not blacklisted: {venue.credit_code}")
            return
        venue = registry.set_blacklist(session, code, False, reason, now(session).date(), CLI)
        typer.echo(f"已移出黑名单 / removed from the blacklist: {venue.credit_code} ({venue.name})")


@registry_app.command("list")
def list_(which: Annotated[Listed, typer.Argument(help="venues | inspectors")],
          jurisdiction: JurisdictionOpt = None, data: DataOpt = None, db: DbOpt = None) -> None:
    """列出名录（制表符分隔）/ List a registry, tab-separated."""
    with open_session(data, db) as session:
        if which is Listed.venues:
            for v in registry.list_venues(session, jurisdiction, limit=None):
                marks = []
                if v.blacklisted:
                    marks.append("黑名单 / blacklisted")
                if v.code_check == "mismatch":
                    marks.append("校验码待确认 / code unconfirmed")
                status = registry.shown(registry.VENUE_COLUMNS, "status", v.status)
                typer.echo("\t".join([v.credit_code, v.name, v.jurisdiction, status, *marks]))
        else:
            for i in registry.list_inspectors(session, jurisdiction, limit=None):
                marks = []
                if not i.qualified:
                    marks.append("无执法资格 / not qualified")
                if not i.active:
                    marks.append("不在岗 / inactive")
                kind = registry.shown(registry.INSPECTOR_COLUMNS, "kind", i.kind)
                typer.echo("\t".join([i.badge, i.name, i.unit, i.jurisdiction, kind, *marks]))
