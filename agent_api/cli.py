"""``cafe-agent``: run and administer the inspector-device service.

Every command takes ``--data DIR`` (default ``$CAFE_AGENT_HOME`` or
``~/.local/share/cafe-agent``) and ``--db URL``; the data directory, the
database and the agent's key pair are made on first use.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from agent_api.api import EXPORT_FORMATS, export_case
from agent_api.app import create_app
from agent_api.audit import CLI, verify_chain
from agent_api.auth import create_officer, enroll_probe, revoke_probe
from agent_api.cli_common import DataOpt, DbOpt, fail, opened, read_password, open_session
from agent_api.cli_draw import draw_app
from agent_api.cli_packs import pack_app, profile_app
from agent_api.cli_plans import disclosure_app, plan_app, result_app
from agent_api.cli_registry import registry_app
from agent_api.settings import Settings
from probe.home import HomeError, parse_enrollment_code
from probe.keys import KeyFileError, key_id, public_line
from probe.report import write_atomic

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="检查人员终端服务 / cafe-agent: the inspector-device service for signed probe reports.")

@app.command()
def serve(host: Annotated[str, typer.Option(help="监听地址 / address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="端口 / port")] = 8765,
          data: DataOpt = None, db: DbOpt = None) -> None:
    """启动服务 / Serve the API and the officer web UI (default on loopback only)."""
    import uvicorn

    try:
        application = create_app(Settings.from_env(data, db))
    except (KeyFileError, OSError) as exc:
        raise fail(str(exc)) from None
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"cafe-agent: http://{shown}:{port}/ui/reports  (API: /v1, 文档 / docs: /docs)")
    uvicorn.run(application, host=host, port=port, log_level="info", server_header=False)


@app.command()
def init(data: DataOpt = None, db: DbOpt = None) -> None:
    """初始化数据目录、数据库和回执密钥 / Create the data directory, database and receipt key (idempotent)."""
    with opened(data, db) as agent:
        pub = agent.key.public_key()
        typer.echo(f"数据目录 / data: {agent.settings.data_dir}")
        typer.echo(f"数据库 / database: {agent.engine.url.render_as_string(hide_password=True)}")
        typer.echo(f"回执公钥 / agent key: {public_line(pub)}")
        typer.echo(f"密钥编号 / key id: {key_id(pub)}")


@app.command("add-officer")
def add_officer(username: Annotated[str, typer.Argument(help="登录名 / login name")],
                name: Annotated[str, typer.Option("--name", help="姓名 / display name")],
                badge: Annotated[str, typer.Option("--badge", help="警号 / badge number")],
                password_file: Annotated[Path | None, typer.Option(
                    "--password-file", help="密码文件（须为 0600）/ file holding the password (mode 0600); "
                                            "without it the password is asked twice, never echoed")] = None,
                data: DataOpt = None, db: DbOpt = None) -> None:
    """添加检查人员账号 / Add an officer account."""
    try:
        password = read_password(password_file)
    except KeyFileError as exc:
        raise fail(str(exc)) from None
    with open_session(data, db) as session:
        officer = create_officer(session, username, name, badge, password)
        typer.echo(f"已添加 / added: {officer.username} ({officer.display_name}, {officer.badge})")


@app.command("enroll-probe")
def enroll(pubkey_file: Annotated[Path | None, typer.Argument(help="探针公钥文件 / the probe's public key file")] = None,
           probe_id: Annotated[str | None, typer.Option("--probe-id", help="探针编号 / probe id (with a key file)")]
           = None,
           code: Annotated[str | None, typer.Option("--code", help="探针屏幕或标签上的登记码 / the probe's enrollment "
                                                                   "code, 'cafe-probe-enrol:1:…' (instead of a file)")]
           = None,
           label: Annotated[str, typer.Option("--label", help="备注 / label")] = "",
           data: DataOpt = None, db: DbOpt = None) -> None:
    """登记探针公钥 / Enroll a probe's public key: a key file (PEM or ed25519: line) with --probe-id, or --code."""
    if (pubkey_file is None) == (code is None):
        raise fail("须给出公钥文件或 --code 之一 / give either the public key file or --code")
    if code is not None:
        try:
            code_id, code_key = parse_enrollment_code(code)
        except HomeError as exc:
            raise fail(str(exc)) from None
        if probe_id is not None and probe_id != code_id:
            raise fail(f"--probe-id {probe_id} 与登记码中的 {code_id} 不符 / --probe-id differs from the code's "
                        f"probe id {code_id}")
        probe_id, text = code_id, public_line(code_key)
    else:
        if probe_id is None:
            raise fail("使用公钥文件时须给出 --probe-id / --probe-id is required with a key file")
        try:
            text = pubkey_file.read_text(encoding="ascii")[:4096]
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"无法读取公钥 / cannot read {pubkey_file}: {exc}") from None
    with open_session(data, db) as session:
        probe = enroll_probe(session, probe_id, text, label)
        typer.echo(f"已登记 / enrolled: {probe.probe_id}")
        typer.echo(f"密钥编号（请与探针屏幕核对）/ key id (compare with the probe's screen): {probe.key_id}")


@app.command("revoke-probe")
def revoke(probe_id: Annotated[str, typer.Argument(help="探针编号 / probe id")],
           data: DataOpt = None, db: DbOpt = None) -> None:
    """吊销探针密钥 / Revoke a probe's key (its later reports are refused)."""
    with open_session(data, db) as session:
        probe = revoke_probe(session, probe_id)
        typer.echo(f"已吊销 / revoked: {probe.probe_id} ({probe.revoked_at.isoformat()})")


@app.command()
def key(data: DataOpt = None, db: DbOpt = None) -> None:
    """显示回执公钥及编号 / Print the agent's public key line and key id (pin them in the probes)."""
    with opened(data, db) as agent:
        pub = agent.key.public_key()
        typer.echo(public_line(pub))
        typer.echo(key_id(pub))


@app.command()
def export(report_id: Annotated[str, typer.Argument(help="报告编号 / report id")],
           fmt: Annotated[str, typer.Option("--format", help="pdf | json | ocsf")],
           out: Annotated[Path, typer.Option("--out", help="输出文件 / output file")],
           data: DataOpt = None, db: DbOpt = None) -> None:
    """导出案卷 / Export a case as PDF, JSON or OCSF."""
    if fmt not in EXPORT_FORMATS:
        raise fail(f"--format 须为 / must be one of {', '.join(EXPORT_FORMATS)}")
    with open_session(data, db) as session:
        result = export_case(session, report_id, fmt, CLI)
        write_atomic(out, result.content)
        typer.echo(f"已导出 / written: {out} ({len(result.content)} bytes)")


@app.command("verify-log")
def verify_log(data: DataOpt = None, db: DbOpt = None) -> None:
    """校验审计日志哈希链 / Re-check the audit log's hash chain (exit 1 when broken)."""
    with open_session(data, db) as session:
        check = verify_chain(session)
    if not check.ok:
        raise fail(f"审计日志第 {check.bad_seq} 条 / audit entry {check.bad_seq}: {check.problem}")
    typer.echo(f"审计日志完整 / audit log intact: {check.entries} entries")


app.add_typer(plan_app, name="plan")
app.add_typer(result_app, name="result")
app.add_typer(disclosure_app, name="disclosure")
app.add_typer(draw_app, name="draw")
app.add_typer(registry_app, name="registry")
app.add_typer(profile_app, name="profile")
app.add_typer(pack_app, name="pack")


def main() -> None:
    """Entry point for ``python -m agent_api.cli``."""
    app(prog_name="cafe-agent")


if __name__ == "__main__":
    sys.exit(main())
