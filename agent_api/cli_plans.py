"""``cafe-agent plan | result | disclosure``: plans and their rounds, results and deadlines, the public export.

Registered on agent_api.cli's app; every command takes ``--data`` and
``--db`` like the others and says what is wrong in one line on stderr
(exit status 1).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from agent_api.audit import CLI, now
from agent_api.cli_common import DataOpt, DbOpt, fail, open_session, parse_date
from agent_api.disclosure import EXPORT_FORMATS, export_disclosure
from agent_api.draws import get_draw
from agent_api.plans import (REDUCTION_WORDS, ROUND_STATUSES, create_plan, get_plan, list_plans,
                             plan_summary, reduce_round, round_schedule)
from agent_api.results import (DEADLINE_STATUSES, change_result, deadline_items, find_pick,
                               publish_results, record_result)
from probe.report import write_atomic

__all__ = ["plan_app", "result_app", "disclosure_app"]

plan_app = typer.Typer(no_args_is_help=True, help="抽查计划 / spot-check plans and their rounds.")
result_app = typer.Typer(no_args_is_help=True, help="检查结果 / results of drawn venues and their deadlines.")
disclosure_app = typer.Typer(no_args_is_help=True, help="结果公示 / public disclosure of published results.")

TodayOpt = Annotated[str | None, typer.Option("--today", help="按该日期显示 / show as of this day (YYYY-MM-DD; "
                                                              "default: today)")]


def _today(session, text: str | None) -> date:
    return parse_date(text, "--today") if text else now(session).date()


@plan_app.command("create")
def plan_create(jurisdiction: Annotated[str, typer.Argument(help="辖区代码 / jurisdiction code (plans.yaml)")],
                year: Annotated[int, typer.Argument(help="年度 / year")],
                rounds: Annotated[int | None, typer.Option("--rounds", help="每周期轮次 / rounds per period")] = None,
                per: Annotated[str | None, typer.Option("--per", help="周期 / period: year | month")] = None,
                ratio: Annotated[str | None, typer.Option("--ratio", help="抽查比例 / ratio, e.g. 0.05")] = None,
                blacklist_ratio: Annotated[str | None, typer.Option("--blacklist-ratio",
                                                                    help="黑名单抽查比例 / blacklist ratio")] = None,
                inspectors: Annotated[int | None, typer.Option("--inspectors",
                                                               help="每家检查人员数 / inspectors per venue")] = None,
                min_pool: Annotated[int | None, typer.Option("--min-pool",
                                                             help="检查人员库最少人数 / minimum pool")] = None,
                number: Annotated[str | None, typer.Option("--number", help="计划编号 / plan number")] = None,
                name: Annotated[str | None, typer.Option("--name", help="计划名称 / plan name")] = None,
                authority: Annotated[str | None, typer.Option("--authority",
                                                              help="检查实施机关 / authority")] = None,
                data: DataOpt = None, db: DbOpt = None) -> None:
    """制定年度抽查计划 / Create a jurisdiction's plan for a year (defaults from rules/department/plans.yaml)."""
    with open_session(data, db) as session:
        plan = create_plan(session, jurisdiction, year, CLI, plan_number=number, name=name, authority=authority,
                           period=per, rounds=rounds, ratio=ratio, blacklist_ratio=blacklist_ratio,
                           inspectors_per_venue=inspectors, min_pool=min_pool)
        typer.echo(f"已制定 / created: {plan.plan_number}  {plan.name}")
        typer.echo(f"  {plan.rounds} 轮/{plan.period}  比例 ratio {plan.ratio}  黑名单 blacklist {plan.blacklist_ratio}"
                   f"  每家 {plan.inspectors_per_venue} 人  人员库 ≥ {plan.min_pool}")


@plan_app.command("list")
def plan_list(year: Annotated[int | None, typer.Option("--year", help="年度 / year")] = None,
              today: TodayOpt = None, data: DataOpt = None, db: DbOpt = None) -> None:
    """列出抽查计划 / List plans with their rounds done, missing and overdue."""
    with open_session(data, db) as session:
        day = _today(session, today)
        for plan in list_plans(session, year):
            s = plan_summary(plan, day)
            typer.echo(f"{plan.plan_number}\t{plan.name}\t共 {s.total} 轮 / rounds; 已完成 done {s.done}; "
                       f"已核减 waived {s.waived}; 缺失 missing {s.missing}; 逾期 overdue {s.overdue}")


@plan_app.command("show")
def plan_show(plan_number: Annotated[str, typer.Argument(help="计划编号 / plan number")],
              today: TodayOpt = None, data: DataOpt = None, db: DbOpt = None) -> None:
    """显示计划各轮次及状态 / Show a plan's rounds: window, due date and status."""
    with open_session(data, db) as session:
        day = _today(session, today)
        plan = get_plan(session, plan_number)
        typer.echo(f"{plan.plan_number}  {plan.name}  ({plan.authority}; {day.isoformat()})")
        typer.echo("轮次 round\t开始 start\t截止 due\t状态 status\t任务 task / 说明 note")
        for row in round_schedule(plan, day):
            note = row.task_number or ""
            if row.reduction_kind:
                note = f"{REDUCTION_WORDS[row.reduction_kind]}: {row.reduction_reason}"
            typer.echo(f"{row.round_no}\t{row.start}\t{row.due}\t{ROUND_STATUSES[row.status]}\t{note}")


@plan_app.command("reduce")
def plan_reduce(plan_number: Annotated[str, typer.Argument(help="计划编号 / plan number")],
                round_no: Annotated[int, typer.Option("--round", help="轮次 / round number")],
                kind: Annotated[str, typer.Option("--kind", help="joint | cross_department | suspended")],
                reason: Annotated[str, typer.Option("--reason", help="核减原因 / reason")],
                data: DataOpt = None, db: DbOpt = None) -> None:
    """核减轮次 / Waive a round (joint or cross-department check, suspension), with the reason."""
    with open_session(data, db) as session:
        plan = get_plan(session, plan_number)
        reduce_round(session, plan.id, round_no, kind, reason, CLI)
        typer.echo(f"已核减 / waived: {plan.plan_number} 第 {round_no} 轮 / round {round_no} ({kind})")


@result_app.command("record")
def result_record(task: Annotated[str, typer.Argument(help="任务编号 / task number")],
                  credit_code: Annotated[str, typer.Argument(help="统一社会信用代码 / credit code")],
                  result_type: Annotated[str, typer.Option("--type", help="结果类型（代码或中文）/ result type")],
                  completed: Annotated[str, typer.Option("--completed", help="检查完成日期 / completed on")],
                  remark: Annotated[str, typer.Option("--remark", help="备注 / remark")] = "",
                  report: Annotated[str | None, typer.Option("--report", help="报告编号 / report id")] = None,
                  data: DataOpt = None, db: DbOpt = None) -> None:
    """录入检查结果 / Record the result of a drawn venue (again, until published)."""
    on = parse_date(completed, "--completed")
    with open_session(data, db) as session:
        pick = find_pick(session, task, credit_code)
        result = record_result(session, pick.id, result_type, on, remark, CLI, report_id=report)
        estimate = "（估算 / estimate: no confirmed holiday schedule）" if result.deadline_estimated else ""
        typer.echo(f"已录入 / recorded: {task} {credit_code} {result.result_type}; "
                   f"公示期限 / due by {result.deadline}{estimate}")


@result_app.command("publish")
def result_publish(task: Annotated[str, typer.Argument(help="任务编号 / task number")],
                   data: DataOpt = None, db: DbOpt = None) -> None:
    """公示任务的检查结果 / Publish a task's recorded results (credit history, blacklist)."""
    with open_session(data, db) as session:
        published = publish_results(session, get_draw(session, task).id, CLI)
        typer.echo(f"已公示 / published: {task}, {len(published)} 条结果 / results")


@result_app.command("change")
def result_change(task: Annotated[str, typer.Argument(help="任务编号 / task number")],
                  credit_code: Annotated[str, typer.Argument(help="统一社会信用代码 / credit code")],
                  to: Annotated[str, typer.Option("--to", help="新结果类型 / new result type")],
                  reason: Annotated[str, typer.Option("--reason", help="修改原因 / reason")],
                  data: DataOpt = None, db: DbOpt = None) -> None:
    """修改已公示的结果 / Change a published result (only as results.yaml allows), with the reason."""
    with open_session(data, db) as session:
        pick = find_pick(session, task, credit_code)
        if pick.result is None:
            raise fail(f"{task} {credit_code}: 尚无结果 / no result recorded")
        result = change_result(session, pick.result.id, to, reason, CLI)
        typer.echo(f"已修改 / changed: {task} {credit_code} -> {result.result_type}")


@result_app.command("deadlines")
def result_deadlines(today: TodayOpt = None, data: DataOpt = None, db: DbOpt = None) -> None:
    """公示期限 / Result deadlines of drawn venues, overdue and due soon first."""
    with open_session(data, db) as session:
        day = _today(session, today)
        typer.echo("状态 status\t期限 due\t剩余工作日 left\t任务 task\t信用代码 code\t场所 venue")
        for item in deadline_items(session, day):
            estimate = " (估算 / estimate)" if item.estimated else ""
            typer.echo(f"{DEADLINE_STATUSES[item.status]}\t{item.deadline}{estimate}\t{item.working_days_left}\t"
                       f"{item.task_number}\t{item.credit_code}\t{item.venue_name}")


@disclosure_app.command("export")
def disclosure_export(fmt: Annotated[str, typer.Option("--format", help="csv | xlsx | json")],
                      out: Annotated[Path, typer.Option("--out", help="输出文件 / output file")],
                      year: Annotated[int | None, typer.Option("--year", help="计划年度 / plan year")] = None,
                      jurisdiction: Annotated[str | None, typer.Option("--jurisdiction",
                                                                       help="辖区 / jurisdiction")] = None,
                      data: DataOpt = None, db: DbOpt = None) -> None:
    """导出公示数据 / Export the published results with the credit publicity system's fields."""
    if fmt not in EXPORT_FORMATS:
        raise fail(f"--format 须为 / must be one of {', '.join(EXPORT_FORMATS)}")
    with open_session(data, db) as session:
        content = export_disclosure(session, fmt, year=year, jurisdiction=jurisdiction)
        write_atomic(out, content)
        typer.echo(f"已导出 / written: {out} ({len(content)} bytes)")
