"""``cafe-agent draw``: the draw ceremony from the command line (prepare, enter, publish, replace, show, verify).

Registered on agent_api.cli's app; every command but ``verify`` takes
``--data`` and ``--db`` like the others and says what is wrong in one line on
stderr (exit status 1). ``verify`` needs nothing but the bundle file and exits
like the standalone agent_api/draw_algorithm.py: 0 verified, 1 not, 2 unreadable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent_api import draw_algorithm as algo
from agent_api.audit import CLI
from agent_api.auth import authenticate
from agent_api.cli_common import DataOpt, DbOpt, fail, read_password, open_session, parse_date
from agent_api.dept_tables import CHECK_TYPE_WORDS, Draw
from agent_api.draws import (announcement, bundle_bytes, enter_draw, get_draw, prepare_draw,
                             publish_draw, replace_pick, team, witness_inputs)
from agent_api.plans import get_plan
from probe.keys import KeyFileError
from probe.report import write_atomic

__all__ = ["draw_app"]

draw_app = typer.Typer(no_args_is_help=True, help="双随机抽取 / the draw: prepare, witness input, publish, "
                                                  "replace, verify.")

TaskArg = Annotated[str, typer.Argument(help="任务编号 / task number")]


def _witness(text: str) -> tuple[str, str]:
    """``姓名:digits`` (a full-width colon also works: it is what a Chinese keyboard types)."""
    name, colon, digits = text.replace("：", ":").rpartition(":")
    if not colon:
        raise fail(f"--witness 须为“姓名:数字” / --witness must be NAME:DIGITS: {text!r}")
    return name, digits


def _show(draw: Draw) -> None:
    """Print the announcement, the inputs once drawn, and every pick with its team."""
    ann = announcement(draw)
    typer.echo(f"任务 / task: {draw.task_number}  {draw.task_name}  状态 / state: {draw.state}")
    kind = CHECK_TYPE_WORDS.get(ann["check_type"], ann["check_type"])
    typer.echo(f"计划 / plan: {ann['plan_number']} {ann['plan_name']}  第 {draw.round_no} 轮 / round "
               f"{draw.round_no}  机关 / authority: {ann['authority']}  类型 / type: {kind} ({ann['check_type']})")
    typer.echo(f"检查期间 / check: {ann['check_start']} – {ann['check_end']}  准备于 / prepared: {ann['prepared_at']}")
    counts, sizes = ann["counts"], ann["sizes"]
    typer.echo(f"快照 / snapshot: {ann['snapshot_sha256']}  场所 / venues {counts['venues']} (黑名单 / blacklist "
               f"{counts['blacklist']}), 检查人员 / inspectors {counts['inspectors']}, 回避 / conflicts "
               f"{counts['conflicts']}")
    typer.echo(f"抽取数 / sizes: 常规 / regular {sizes['regular']} ({ann['ratio']}), 黑名单 / blacklist "
               f"{sizes['blacklist']} ({ann['blacklist_ratio']}), 每场所检查人员 / per venue "
               f"{ann['inspectors_per_venue']}")
    typer.echo(f"承诺值 / commitment: {ann['commitment']}  算法 / algorithm: {ann['algorithm']}")
    if ann["beacon_name"]:
        typer.echo(f"信标 / beacon: {ann['beacon_name']}  值 / value: {draw.beacon_value or '（待输入 / pending）'}")
    if draw.state == "prepared":
        return
    witnesses = ", ".join(f"{n} ({d})" for n, d in witness_inputs(draw))
    typer.echo(f"见证人 / witnesses: {witnesses}  种子 / seed: {draw.seed}")
    typer.echo("抽中 / picks:")
    for pick in sorted(draw.venues, key=lambda p: p.id):
        mark = "" if pick.active else "  （已替换 / withdrawn）"
        typer.echo(f"  {pick.kind:9} #{pick.position:<4} {pick.venue.credit_code}  {pick.venue.name}  "
                   f"检查人员 / inspectors: {', '.join(team(pick))}{mark}")


@draw_app.command("prepare")
def prepare(plan: Annotated[str, typer.Option("--plan", help="计划编号 / plan number")],
            round_no: Annotated[int, typer.Option("--round", help="轮次 / round number (1-based)")],
            task: Annotated[str, typer.Option("--task", help="任务编号 / task number")],
            name: Annotated[str, typer.Option("--name", help="任务名称 / task name")],
            start: Annotated[str, typer.Option("--start", help="检查开始日期 / check start (YYYY-MM-DD)")],
            end: Annotated[str, typer.Option("--end", help="检查结束日期 / check end (YYYY-MM-DD)")],
            beacon_name: Annotated[str | None, typer.Option(
                "--beacon-name", help="公共随机信标（其未来的值）/ a public beacon whose future value is used")] = None,
            check_type: Annotated[str, typer.Option("--type", help="undirected（不定向）| directed（定向）")]
            = "undirected",
            authority: Annotated[str | None, typer.Option("--authority", help="检查机关 / authority (default: "
                                                                               "the plan's)")] = None,
            data: DataOpt = None, db: DbOpt = None) -> None:
    """准备抽取：冻结名录快照、承诺密钥、公布公告 / Prepare: freeze the snapshot, commit to the secret, announce."""
    check_start, check_end = parse_date(start, "--start"), parse_date(end, "--end")
    with open_session(data, db) as session:
        draw = prepare_draw(session, get_plan(session, plan).id, round_no, task, name, check_start, check_end, CLI,
                            beacon_name=beacon_name, check_type=check_type, authority=authority)
        _show(draw)


@draw_app.command("enter")
def enter(task: TaskArg,
          witness: Annotated[list[str], typer.Option("--witness", help="见证人及骰子数字 / a witness and the "
                                                                      "dice digits, NAME:DIGITS (repeat, in order)")],
          beacon_value: Annotated[str | None, typer.Option("--beacon-value", help="信标值 / the beacon's "
                                                                                  "value")] = None,
          data: DataOpt = None, db: DbOpt = None) -> None:
    """现场抽取：录入见证人骰子数字 / Draw: enter the witnesses' dice digits (≥ 20 in all); prints the picks."""
    witnesses = [_witness(w) for w in witness]
    with open_session(data, db) as session:
        draw = enter_draw(session, get_draw(session, task).id, witnesses, beacon_value, CLI)
        _show(draw)


@draw_app.command("publish")
def publish(task: TaskArg, data: DataOpt = None, db: DbOpt = None) -> None:
    """公布：揭示密钥并生成可复核的抽取包 / Publish: reveal the secret and make the verifiable bundle."""
    with open_session(data, db) as session:
        draw = publish_draw(session, get_draw(session, task).id, CLI)
        typer.echo(f"已公布 / published: {draw.task_number}  ({len(draw.bundle or '')} bytes)")


@draw_app.command("replace")
def replace(task: TaskArg,
            venue: Annotated[str, typer.Option("--venue", help="被替换场所的信用代码 / the credit code of the pick")],
            approver: Annotated[str, typer.Option("--approver", help="批准人登录名 / the approver's login name")],
            reason: Annotated[str, typer.Option("--reason", help="替换理由 / why")],
            inspector: Annotated[str | None, typer.Option(
                "--inspector", help="只替换该检查人员（警号）/ replace only this inspector (badge)")] = None,
            password_file: Annotated[Path | None, typer.Option(
                "--approver-password-file", help="批准人密码文件（须为 0600）/ file with the approver's password "
                                                 "(mode 0600); without it the password is asked, never echoed")]
            = None,
            data: DataOpt = None, db: DbOpt = None) -> None:
    """经批准替换抽中场所或检查人员 / Replace a pick (or one inspector) with approval: the next ticket of its stream."""
    try:
        password = (read_password(password_file) if password_file is not None
                    else typer.prompt("批准人密码 / approver's password", hide_input=True))
    except KeyFileError as exc:
        raise fail(str(exc)) from None
    with open_session(data, db) as session:
        officer = authenticate(session, approver, password)
        if officer is None:
            raise fail("批准人登录名或密码错误 / wrong approver login name or password")
        draw = replace_pick(session, get_draw(session, task).id, venue_code=venue, inspector_badge=inspector,
                            approver=officer, reason=reason, actor=CLI)
        _show(draw)


@draw_app.command("show")
def show(task: TaskArg, data: DataOpt = None, db: DbOpt = None) -> None:
    """显示公告及抽取结果 / Show the announcement and, once drawn, the picks."""
    with open_session(data, db) as session:
        _show(get_draw(session, task))


@draw_app.command("bundle")
def bundle(task: TaskArg, out: Annotated[Path, typer.Option("--out", help="输出文件 / output file")],
           data: DataOpt = None, db: DbOpt = None) -> None:
    """导出已公布的抽取包 / Write the published bundle to a file."""
    with open_session(data, db) as session:
        content = bundle_bytes(get_draw(session, task))
    write_atomic(out, content)
    typer.echo(f"已导出 / written: {out} ({len(content)} bytes)")


@draw_app.command("verify")
def verify(path: Annotated[Path, typer.Argument(help="抽取包 / the bundle file")]) -> None:
    """独立复核抽取包（无需数据目录）/ Verify a bundle with nothing else (exit 0 ok, 1 mismatch, 2 unreadable)."""
    raise typer.Exit(code=algo.verify_file(str(path)))
