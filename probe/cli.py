"""``cafe-probe``: run an inspection, re-evaluate saved observations, validate a profile."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from probe import __version__
from probe.display import print_findings
from probe.evaluate import evaluate as evaluate_findings
from probe.observations import Observations
from probe.profile import ProfileError, load_profile
from probe.rules import RulesError, load_ruleset
from probe.run import DEFAULT_TZ, Progress as RunProgress, RunOptions, RunRefused, execute, prepare

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="网吧现场检查探针 / Internet-café inspection probe. 先读 README / see README.md.")
out = Console()
if not out.is_terminal:  # logs and pipes: wide enough that Chinese summaries are not cut
    out = Console(width=120)
err = Console(stderr=True)
if not err.is_terminal:
    err = Console(stderr=True, width=120)

EXIT_REFUSED = 2


def _refuse(message: str) -> None:
    err.print(f"cafe-probe: {message}", markup=False, highlight=False)
    raise typer.Exit(EXIT_REFUSED)


@app.command()
def run(
    profile: Annotated[Path, typer.Option(help="场所档案 YAML / venue profile")],
    iface: Annotated[Optional[str], typer.Option(help="接入网吧交换机的接口（必填）/ interface on the café switch (required)")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="输出目录 / output directory")] = Path("out"),
    allow_large: Annotated[bool, typer.Option(help=f"允许扫描大于 /20 的网段 / allow subnets larger than /20")] = False,
    rate: Annotated[float, typer.Option(help="每秒最多发送的 ARP 请求 / ARP requests per second at most")] = 1000.0,
    retries: Annotated[int, typer.Option(help="未应答地址的重问次数 / times a silent address is asked again")] = 5,
    no_names: Annotated[bool, typer.Option("--no-names", help="不查询 NetBIOS 名称 / skip NetBIOS name queries")] = False,
    timezone: Annotated[str, typer.Option(help="场所时区 / venue time zone")] = DEFAULT_TZ,
) -> None:
    """完整检查：扫描、判定、输出 / Full run: sweep, judge, write findings.json, observations.json, capture.pcap."""
    if not 1 <= rate <= 20000:
        _refuse("--rate 须在 1–20000 之间 / --rate must be within 1–20000")
    if not 0 <= retries <= 20:
        _refuse("--retries 须在 0–20 之间 / --retries must be within 0–20")
    opts = RunOptions(profile=profile, iface=iface, out=out_dir, allow_large=allow_large, rate=rate,
                      retries=retries, names=not no_names, timezone=timezone)
    try:
        prep = prepare(opts)
    except RunRefused as exc:
        _refuse(str(exc))
    err.print(f"场所 venue: {prep.profile.venue.name} ({prep.profile.venue.id}) · 接口 iface: {prep.interface.name} "
              f"{prep.probe_address} · 网段 subnets: {', '.join(map(str, prep.profile.network.subnets))}")
    for warning in prep.profile.warnings:
        err.print(f"[yellow]注意 warning:[/] {warning}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=err, transient=False) as bar:
        sweep_task = bar.add_task("ARP 扫描 sweep", total=None, note="")
        names_task = bar.add_task("NetBIOS 名称 names", total=None, note="", visible=False)

        def on_sweep(rnd: int, sent: int, total: int, found: int) -> None:
            bar.update(sweep_task, completed=sent, total=total, note=f"第{rnd}轮 round {rnd} · 发现 found {found}")

        def on_names(rnd: int, sent: int, total: int) -> None:
            bar.update(names_task, visible=True, completed=sent, total=total, note=f"第{rnd}轮 round {rnd}")

        try:
            obs, findings = execute(prep, opts, RunProgress(sweep=on_sweep, names=on_names))
        except RunRefused as exc:
            _refuse(str(exc))
    sweep = obs.arp
    err.print(f"发现 {len(sweep.hosts)} 台在线主机 / {len(sweep.hosts)} live hosts in {sweep.seconds:.2f} s "
              f"({sum(r.asked for r in sweep.rounds)} requests, {len(sweep.rounds)} rounds); "
              f"NetBIOS {len(obs.netbios.answers)}/{obs.netbios.queried}")
    print_findings(out, findings, f"{prep.profile.venue.name} · {obs.run.started_at.isoformat(timespec='seconds')}")
    out.print(f"输出 output: {out_dir}/findings.json, observations.json, capture.pcap", highlight=False)


@app.command()
def evaluate(
    observations: Annotated[Path, typer.Argument(help="observations.json")],
    profile: Annotated[Path, typer.Option(help="场所档案 YAML / venue profile")],
    json_out: Annotated[bool, typer.Option("--json", help="输出 findings JSON 而不是表格 / print findings JSON")] = False,
) -> None:
    """由已保存的观测数据重新判定（不发包）/ Re-derive findings from saved observations (no network)."""
    try:
        obs = Observations.model_validate_json(observations.read_bytes())
    except OSError as exc:
        _refuse(f"无法读取 / cannot read {observations}: {exc.strerror}")
    except ValueError as exc:
        _refuse(f"观测文件无效 / not a valid observations file: {str(exc).splitlines()[0]}")
    try:
        prof = load_profile(profile)
        ruleset = load_ruleset()
    except ProfileError as exc:
        _refuse(f"场所档案无效 / bad profile: {exc.problems[0] if exc.problems else exc}")
    except RulesError as exc:
        _refuse(f"规则库无效 / bad ruleset: {'; '.join(exc.problems[:3])}")
    from probe.evaluate import findings_document

    try:
        findings = evaluate_findings(obs, prof, ruleset)
    except RulesError as exc:
        _refuse(f"规则库无效 / bad ruleset: {'; '.join(exc.problems[:3])}")
    if json_out:
        json.dump(findings_document(obs, findings, ruleset), sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    else:
        print_findings(out, findings, f"{prof.venue.name} · {obs.run.started_at.isoformat(timespec='seconds')}")


@app.command("check-profile")
def check_profile(profile: Annotated[Path, typer.Argument(help="场所档案 YAML / venue profile")]) -> None:
    """校验场所档案，逐条列出问题 / Validate a venue profile and list every problem."""
    try:
        prof = load_profile(profile)
    except ProfileError as exc:
        for line in exc.problems or [str(exc)]:
            err.print(line, markup=False, highlight=False)
        raise typer.Exit(EXIT_REFUSED)
    for warning in prof.warnings:
        err.print(f"注意 warning: {warning}", markup=False, highlight=False)
    out.print(f"档案有效 / profile OK: {prof.venue.id} {prof.venue.name}", highlight=False)


@app.command()
def version() -> None:
    """版本与规则库 / Version and ruleset."""
    try:
        rs = load_ruleset()
        out.print(f"cafe-probe {__version__} · ruleset {rs.version} sha256 {rs.sha256}", highlight=False)
    except RulesError as exc:
        out.print(f"cafe-probe {__version__} · ruleset invalid: {exc}", highlight=False)


if __name__ == "__main__":
    app()
