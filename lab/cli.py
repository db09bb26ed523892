"""``cafe-lab``: bring a simulated café up, show its ground truth, run commands in it, take it down."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from lab.build import Lab, LabError
from lab.registries import write_demo_registries
from lab.scenario import ScenarioError, load_scenario, scenario_names
from probe.report import REPORT_FILE, verify_report_file

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="模拟网吧实验环境（网络命名空间）/ A simulated café in network namespaces.")

LabId = Annotated[str, typer.Option("--id", help="实验环境编号 / lab id (prefixes its namespaces)")]


def _fail(message: str) -> None:
    typer.echo(f"cafe-lab: {message}", err=True)
    raise typer.Exit(2)


def _build(scenario: str, lab_id: str, loss: float | None = None) -> Lab:
    """Build a lab, or exit with one line saying why (nothing is left behind either way)."""
    try:
        sc = load_scenario(scenario)
        if loss is not None:
            sc.switch.loss_percent = loss
        lab = Lab(sc, lab_id)
        typer.echo(f"== 搭建 building '{sc.name}' ({len(lab.terminals)} terminals) as lab '{lab_id}': "
                   f"{sc.description}", err=True)
        return lab.up()
    except (LabError, ScenarioError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; everything built so far was removed")
    raise AssertionError("unreachable")


@app.command("list")
def list_scenarios() -> None:
    """列出内置场景 / List the shipped scenarios."""
    for name in scenario_names():
        sc = load_scenario(name)
        typer.echo(f"{name:8} {sc.description}")


@app.command()
def up(scenario: Annotated[str, typer.Argument(help="场景名或文件 / scenario name or file")],
       lab_id: LabId = "cafe",
       loss: Annotated[Optional[float], typer.Option(help="交换机随机丢帧百分比 / switch frame loss, percent")] = None,
       ) -> None:
    """搭建场景 / Build the café of a scenario and leave it running."""
    lab = _build(scenario, lab_id, loss)
    typer.echo(f"就绪 / up: probe namespace {lab.probe_netns}, interface eth0; 'cafe-lab down --id {lab_id}' removes it")
    typer.echo(f"场所档案 / staged profile (fresh secrets beside it): {lab.staged_profile}")


@app.command()
def profile(lab_id: LabId = "cafe") -> None:
    """输出本实验环境已布置的场所档案路径 / Print the path of the venue profile staged for a running lab."""
    try:
        typer.echo(str(Lab.attach(lab_id).staged_profile))
    except LabError as exc:
        _fail(str(exc))


@app.command()
def registries(out: Annotated[Path, typer.Option("--out", help="输出目录 / output directory")] = Path("out/registries"),
               jurisdiction: Annotated[str, typer.Option(help="辖区代码 / jurisdiction code")] = "FZ-MW",
               venues: Annotated[int, typer.Option(help="营业场所数 / open venues")] = 60,
               blacklisted: Annotated[int, typer.Option(help="其中列入黑名单数 / of them blacklisted")] = 6,
               inspectors: Annotated[int, typer.Option(help="执法检查人员数 / officers in the pool")] = 8) -> None:
    """生成演示名录库（CSV）/ Write a fictional district's venue, inspector and conflict registries as CSV."""
    try:
        made = write_demo_registries(out, jurisdiction=jurisdiction, venues=venues, blacklisted=blacklisted,
                                     inspectors=inspectors)
    except ValueError as exc:
        _fail(str(exc))
    for path in (made.venues, made.inspectors, made.conflicts):
        typer.echo(str(path))
    typer.echo(f"场所 / venues: {made.venue_count} (黑名单 / blacklisted {made.blacklisted}); "
               f"人员 / people: {made.inspector_count}; 校验位不符待确认 / checksum to confirm: {made.mismatch_code}")


@app.command()
def down(lab_id: LabId = "cafe") -> None:
    """拆除场景 / Remove a lab: its processes (by PID) and namespaces."""
    try:
        Lab.attach(lab_id).down()
    except LabError as exc:
        _fail(str(exc))
    typer.echo(f"已拆除 / lab '{lab_id}' removed")


@app.command()
def cable(state: Annotated[str, typer.Argument(help="in 插上 | out 拔出 / plug in or pull out")],
          lab_id: LabId = "cafe") -> None:
    """插拔探针网线 / Plug the probe's café cable in or pull it out (its port gains or loses carrier)."""
    if state not in ("in", "out"):
        _fail(f"unknown cable state '{state}': in | out")
    try:
        Lab.attach(lab_id).set_probe_plugged(state == "in")
    except LabError as exc:
        _fail(str(exc))
    typer.echo("已插上 / plugged in" if state == "in" else "已拔出 / pulled out")


@app.command()
def loss(percent: Annotated[float, typer.Argument(help="交换机随机丢帧百分比 / switch frame loss, percent")],
         lab_id: LabId = "cafe") -> None:
    """设置交换机丢帧 / Set the switch's random frame loss of a running lab."""
    try:
        Lab.attach(lab_id).set_loss(percent)
    except LabError as exc:
        _fail(str(exc))
    typer.echo(f"丢帧 / loss: {percent:g} %")


@app.command()
def truth(lab_id: LabId = "cafe") -> None:
    """输出真实情况（JSON）/ Print the ground truth of a running lab as JSON."""
    try:
        data = Lab.attach(lab_id).truth()
    except LabError as exc:
        _fail(str(exc))
    json.dump(data, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(ctx: typer.Context, lab_id: LabId = "cafe") -> None:
    """在探针命名空间中运行命令 / Run a command in the probe's namespace: cafe-lab exec -- CMD ..."""
    if not ctx.args:
        _fail("no command given: cafe-lab exec -- CMD ...")
    try:
        argv = Lab.attach(lab_id).exec_argv(list(ctx.args))
    except LabError as exc:
        _fail(str(exc))
    raise typer.Exit(subprocess.call(argv))


@app.command()
def demo(scenario: Annotated[str, typer.Argument(help="场景名 / scenario name")] = "messy",
         out: Annotated[str, typer.Option(help="输出目录 / output directory")] = "out/demo",
         port: Annotated[int, typer.Option(help="检查设备服务端口（仅 127.0.0.1）/ inspector device port (127.0.0.1 "
                                                "only)")] = 8765) -> None:
    """演示：搭建场景、运行探针、签名报告送达检查设备 / Demo: build the café, run the probe in it, tear it down,
    deliver the signed report to the inspector device on loopback and print its URL."""
    from lab.demo import DemoError, DemoPaths, OFFICERS, ensure_agent, ensure_probe, start_agent

    paths = DemoPaths(Path(out).resolve())
    paths.root.mkdir(parents=True, exist_ok=True)
    home = ensure_probe(paths)
    ensure_agent(paths, home)
    lab_id = "demo"
    try:
        stale = Lab.attach(lab_id)
    except LabError:
        stale = None
    if stale is not None:  # a demo interrupted by power loss or kill -9 left its lab behind
        typer.echo("清理上次未拆除的演示环境 / removing the lab an earlier demo left behind", err=True)
        stale.down()
    lab = _build(scenario, lab_id)
    run_dir = paths.new_run_dir()
    try:
        truth = lab.truth()
        argv = lab.exec_argv(["cafe-probe", "run", "--profile", truth["profile"],
                              "--iface", truth["probe"]["interface"], "--out", str(run_dir),
                              "--home", str(paths.probe_home), "--task", "DEMO-" + scenario.upper(),
                              *sum((["--inspector", badge] for _, _, badge in OFFICERS), [])])
        typer.echo(f"== 运行 running: cafe-lab exec -- {' '.join(argv[4:])}", err=True)
        code = subprocess.call(argv)
        wrong = [t for t in truth["terminals"] if t["mismatch"] and t["power"] == "on"]
        typer.echo(f"== 真实情况 ground truth: {len(truth['live_hosts'])} live hosts; machines on a wrong address: "
                   f"{[t['number'] for t in wrong]} (sharing no name, so unidentifiable: "
                   f"{[t['number'] for t in wrong if not t['netbios']]})", err=True)
    except KeyboardInterrupt:
        code = 130
    finally:
        lab.down()
        typer.echo("== 已拆除 lab removed", err=True)
    if code != 0:
        raise typer.Exit(code)
    try:
        url = start_agent(paths, port)
    except DemoError as exc:
        _fail(str(exc))
    home.pin_agent(url, (paths.agent_data / "agent.pub").read_text())
    typer.echo(f"== 检查设备 inspector device: {url} (127.0.0.1 only); 发送 sending the outbox from the host side",
               err=True)
    sent = subprocess.call([str(Path(sys.executable).parent / "cafe-probe"), "send", "--home", str(paths.probe_home)])
    report, _ = verify_report_file(run_dir / REPORT_FILE, home.identity().public_key)
    report_id = report.payload.report_id
    typer.echo("")
    typer.echo(f"报告 report:   {url}/ui/reports/{report_id}")
    typer.echo(f"登录 log in:   {', '.join(u for u, _, _ in OFFICERS)}; 密码在 passwords in "
               f"{paths.password_file('officer1')}, {paths.password_file('officer2')}")
    typer.echo(f"离线验证 verify offline: .venv/bin/cafe-probe verify {run_dir / 'report.dsse.json'} "
               f"--pubkey {paths.probe_home / 'probe.pub'}")
    typer.echo(f"停止检查设备 stop the device: .venv/bin/cafe-lab demo-stop --out {out}")
    raise typer.Exit(0 if sent == 0 else sent)


@app.command("demo-stop")
def demo_stop(out: Annotated[str, typer.Option(help="演示输出目录 / the demo's output directory")] = "out/demo") -> None:
    """停止演示启动的检查设备服务（按记录的 PID）/ Stop the demo's inspector device (by its recorded PID)."""
    from lab.demo import DemoPaths, stop_agent

    stopped = stop_agent(DemoPaths(Path(out).resolve()))
    typer.echo("已停止 stopped" if stopped else "没有运行中的演示服务 / no demo agent running")


if __name__ == "__main__":
    app()
