"""``cafe-probe``: run an inspection, re-evaluate saved observations, validate a profile."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from probe import __version__
from probe.display import print_findings
from probe.home import HomeError, ProbeHome
from probe.iface import CarrierWatch
from probe.keys import KeyFileError, load_public_key, public_line
from probe.outbox import Outbox
from probe.report import ReportError, verify_report_file
from probe.sender import SendResult, send_outbox
from probe.evaluate import evaluate as evaluate_findings
from probe.observations import Observations
from probe.profile import ProfileError, load_profile
from probe.rules import RulesError, load_ruleset
from probe.run import DEFAULT_TZ, Progress as RunProgress, RunOptions, RunRefused, execute, prepare
from probe.cli_common import EXIT_REFUSED, HomeOption, app, err, open_home, out, refuse

@app.command()
def run(
    profile: Annotated[Path, typer.Option(help="场所档案 YAML / venue profile")],
    iface: Annotated[Optional[str], typer.Option(help="接入网吧交换机的接口（必填）/ interface on the café switch (required)")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="输出目录 / output directory")] = Path("out"),
    allow_large: Annotated[bool, typer.Option(help="允许扫描大于 /20 的网段 / allow subnets larger than /20")] = False,
    rate: Annotated[float, typer.Option(help="每秒最多发送的 ARP 请求 / ARP requests per second at most")] = 1000.0,
    retries: Annotated[int, typer.Option(help="未应答地址的重问次数 / times a silent address is asked again")] = 5,
    no_names: Annotated[bool, typer.Option("--no-names", help="不查询 NetBIOS 名称 / skip NetBIOS name queries")] = False,
    no_dhcp: Annotated[bool, typer.Option("--no-dhcp", help="不发送 DHCP 探测（不租用地址）/ skip the DHCP discover "
                                                             "(it never takes a lease)")] = False,
    no_forwarding: Annotated[bool, typer.Option("--no-forwarding", help="不做转发（双线路）测试 / skip the forwarding "
                                                                         "(second uplink) test")] = False,
    no_snmp: Annotated[bool, typer.Option("--no-snmp", help="不读取档案中的 SNMP 设备 / skip the profile's SNMP "
                                                             "targets")] = False,
    no_services: Annotated[bool, typer.Option("--no-services", help="不扫描服务（计费、审计、实名客户端）/ skip the "
                                                                     "service scan (billing, audit, real-name client)")] = False,
    no_cameras: Annotated[bool, typer.Option("--no-cameras", help="不查找摄像机 / skip the camera survey")] = False,
    no_logs: Annotated[bool, typer.Option("--no-logs", help="不读取服务器日志目录 / skip reading the log sources "
                                                             "over SFTP")] = False,
    timezone: Annotated[str, typer.Option(help="场所时区 / venue time zone")] = DEFAULT_TZ,
    home: HomeOption = None,
    task: Annotated[Optional[str], typer.Option(help="检查任务编号 / inspection task number")] = None,
    inspector: Annotated[Optional[list[str]], typer.Option(help="检查人员执法证号，可重复 / inspector badge number "
                                                                "(repeat for each)")] = None,
    send: Annotated[bool, typer.Option("--send", help="运行后把报告发送到检查设备 / send the report to the "
                                                       "inspector device afterwards")] = False,
) -> None:
    """完整检查：扫描、判定、签名、入发件箱 / Full run: sweep, judge, sign; writes findings.json, observations.json,
    capture.pcap and report.dsse.json, and queues the report in the outbox."""
    if not 1 <= rate <= 20000:
        refuse("--rate 须在 1–20000 之间 / --rate must be within 1–20000")
    if not 0 <= retries <= 20:
        refuse("--retries 须在 0–20 之间 / --retries must be within 0–20")
    opts = RunOptions(profile=profile, iface=iface, out=out_dir, allow_large=allow_large, rate=rate,
                      retries=retries, names=not no_names, dhcp=not no_dhcp, forwarding=not no_forwarding,
                      snmp=not no_snmp, services=not no_services, cameras=not no_cameras, logs=not no_logs,
                      timezone=timezone,
                      home=open_home(home).root, task_id=task, inspectors=inspector or [])
    if send:
        _agent(open_home(home))  # refuse before sweeping, not after, when no device is pinned
    try:
        prep = prepare(opts)
    except RunRefused as exc:
        refuse(str(exc))
    err.print(f"场所 venue: {prep.profile.venue.name} ({prep.profile.venue.id}) · 接口 iface: {prep.interface.name} "
              f"{prep.probe_address} · 网段 subnets: {', '.join(map(str, prep.profile.network.subnets))}")
    for warning in prep.profile.warnings:
        err.print(f"[yellow]注意 warning:[/] {warning}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=err, transient=False) as bar:
        sweep_task = bar.add_task("ARP 扫描 sweep", total=None, note="")
        names_task = bar.add_task("NetBIOS 名称 names", total=None, note="", visible=False)
        stages = {
            "dhcp": bar.add_task("DHCP 服务器 servers", total=None, note="", visible=False),
            "foreign": bar.add_task("网段外设备 foreign subnets", total=None, note="", visible=False),
            "forwarding": bar.add_task("转发测试 forwarding", total=None, note="", visible=False),
            "snmp": bar.add_task("SNMP 设备 devices", total=None, note="", visible=False),
            "services": bar.add_task("服务扫描 services", total=None, note="", visible=False),
            "cameras": bar.add_task("摄像机 cameras", total=None, note="", visible=False),
            "logs": bar.add_task("日志目录 log folders", total=None, note="", visible=False),
        }
        notes = {"dhcp": "收集 OFFER / collecting offers (no lease)",
                 "foreign": "ARP 询问常见路由器地址 / asking for common router addresses",
                 "forwarding": "TTL 1，必要时一个 SYN / TTL 1, then one SYN where silent",
                 "snmp": "只读 / read-only",
                 "services": "计费、审计、实名客户端 / billing, audit, real-name client",
                 "cameras": "WS-Discovery、SADP、DHIP、RTSP",
                 "logs": "SFTP 只读 / read-only SFTP"}
        current: list[str] = []

        def on_stage(name: str) -> None:
            if current and current[-1] in stages:  # the stage before is over
                bar.update(stages[current[-1]], total=1, completed=1)
            current.append(name)
            if name in stages:
                bar.update(stages[name], visible=True, note=notes[name])

        def on_sweep(rnd: int, sent: int, total: int, found: int) -> None:
            bar.update(sweep_task, completed=sent, total=total, note=f"第{rnd}轮 round {rnd} · 发现 found {found}")

        def on_names(rnd: int, sent: int, total: int) -> None:
            bar.update(names_task, visible=True, completed=sent, total=total, note=f"第{rnd}轮 round {rnd}")

        # A cable pulled mid-run ends the run between stages, kept and signed as incomplete (never clean).
        try:
            watch = CarrierWatch(prep.interface.name)
        except OSError as exc:
            refuse(str(exc))
        try:
            obs, findings = execute(prep, opts, RunProgress(stage=on_stage, sweep=on_sweep, names=on_names),
                                    stop=watch.lost)
        except RunRefused as exc:
            refuse(str(exc))
        finally:
            watch.close()
        on_stage("done")
    sweep = obs.arp
    err.print(f"发现 {len(sweep.hosts)} 台在线主机 / {len(sweep.hosts)} live hosts in {sweep.seconds:.2f} s "
              f"({sum(r.asked for r in sweep.rounds)} requests, {len(sweep.rounds)} rounds); "
              f"NetBIOS {len(obs.netbios.answers)}/{obs.netbios.queried}"
              + (f"; DHCP 服务器 servers {len(obs.dhcp.offers)}" if obs.dhcp is not None else "")
              + (f"; 转发主机 forwarders {len(obs.forwarding.forwarders)}" if obs.forwarding is not None else "")
              + (f"; SNMP {sum(d.ok for d in obs.snmp)}/{len(obs.snmp)}" if obs.snmp else "")
              + (f"; 服务 services {sum(len(h.open) for h in obs.services.hosts)} open, "
                 f"{len(obs.services.matches)} matched" if obs.services is not None else "")
              + (f"; 摄像机 cameras {len(obs.cameras.cameras)}" if obs.cameras is not None else ""))
    if obs.run.interrupted is not None:
        err.print(f"未完成（中断）/ INCOMPLETE (interrupted): {obs.run.interrupted.stage}: {obs.run.interrupted.reason}",
                  markup=False, highlight=False, soft_wrap=True)
    print_findings(out, findings, f"{prep.profile.venue.name} · {obs.run.started_at.isoformat(timespec='seconds')}")
    out.print(f"输出 output: {out_dir}/findings.json, observations.json, capture.pcap, report.dsse.json "
              f"(已签名、已入发件箱 / signed, queued in the outbox)", highlight=False)
    if send:
        _send_and_print(open_home(home))


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
        refuse(f"无法读取 / cannot read {observations}: {exc.strerror}")
    except ValueError as exc:
        refuse(f"观测文件无效 / not a valid observations file: {str(exc).splitlines()[0]}")
    try:
        prof = load_profile(profile)
        ruleset = load_ruleset()
    except ProfileError as exc:
        refuse(f"场所档案无效 / bad profile: {exc.problems[0] if exc.problems else exc}")
    except RulesError as exc:
        refuse(f"规则库无效 / bad ruleset: {'; '.join(exc.problems[:3])}")
    from probe.evaluate import findings_document

    try:
        findings = evaluate_findings(obs, prof, ruleset)
    except RulesError as exc:
        refuse(f"规则库无效 / bad ruleset: {'; '.join(exc.problems[:3])}")
    if json_out:
        json.dump(findings_document(obs, findings, ruleset), sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    else:
        print_findings(out, findings, f"{prof.venue.name} · {obs.run.started_at.isoformat(timespec='seconds')}")


_LOGS_STATUS = {"pass": "pass", "fail": "fail", "undated": "inconclusive", "error": "inconclusive"}


@app.command()
def logs(
    path: Annotated[Path, typer.Option("--path", help="日志目录（如拷贝到U盘的日志）/ log folder (e.g. copied onto a USB stick)")],
    name_pattern: Annotated[Optional[str], typer.Option(
        "--name-pattern", help="文件名中的日期（strftime），如 billing-%Y%m%d.log；不给则按首末行时间 / "
                               "date in file names (strftime); without it, dates come from first/last lines")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", help="包括子目录 / include subfolders")] = False,
    tz_name: Annotated[str, typer.Option("--timezone", help="场所时区 / venue time zone")] = DEFAULT_TZ,
    today: Annotated[Optional[str], typer.Option(
        "--today", help="检查日 YYYY-MM-DD（默认该时区的今天）/ inspection day (default: today in that zone)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="输出 JSON 而不是表格 / print JSON")] = False,
) -> None:
    """离线检查日志保存期限（不联网）/ Offline log retention check of a local folder (no network)."""
    from datetime import date, datetime
    from zoneinfo import ZoneInfo

    from pydantic import ValidationError
    from rich.markup import escape
    from rich.table import Table

    from probe.checks.log_retention import CHECK_ID, FOLDER_ERRORS, coverage, folder_outcome
    from probe.display import STATUS_LABEL
    from probe.findings import Status
    from probe.logdates import LogDateError, load_line_formats, read_local_folder
    from probe.profile import LogPath

    try:
        tz = ZoneInfo(tz_name)
    except (ValueError, LookupError):  # ZoneInfoNotFoundError is a KeyError
        refuse(f"未知时区 / unknown time zone: {tz_name!r}")
    try:
        day = date.fromisoformat(today) if today else datetime.now(tz).date()
    except ValueError:
        refuse(f"--today 应为 YYYY-MM-DD / --today must be YYYY-MM-DD: {today!r}")
    try:
        spec = LogPath(path=str(path), name_pattern=name_pattern, recursive=recursive)
    except ValidationError as exc:
        problem = exc.errors(include_url=False, include_input=False)[0]
        words = problem.get("ctx") or {}
        refuse(f"--name-pattern: {words.get('zh', '无效')} / {words.get('en', problem['msg'])}")
    try:
        ruleset = load_ruleset()
        thresholds = ruleset.check(CHECK_ID).thresholds
        read = read_local_folder(path, spec, load_line_formats(), tz)
    except RulesError as exc:
        refuse(f"规则库无效 / bad ruleset: {'; '.join(exc.problems[:3])}")
    except LogDateError as exc:
        refuse(f"日志格式文件无效 / bad log formats: {str(exc).splitlines()[0]}")
    if read.error in ("missing", "not_a_folder", "permission", "io"):
        zh, en = FOLDER_ERRORS[read.error]
        refuse(f"无法读取 / cannot read {path}: {zh} / {en}")
    cov = coverage(read.covered, day, int(thresholds["retention_days"]), int(thresholds["gap_allowance_days"]))
    status = Status(_LOGS_STATUS[folder_outcome(read, cov)])
    gaps = [[g.first.isoformat(), g.last.isoformat()] for g in cov.gaps]
    doc = {"path": str(path), "name_pattern": name_pattern, "recursive": recursive, "timezone": tz_name,
           "today": day.isoformat(), "retention_days": thresholds["retention_days"],
           "gap_allowance_days": thresholds["gap_allowance_days"], "window_first": cov.window_first.isoformat(),
           "window_last": cov.window_last.isoformat(), "oldest": cov.oldest.isoformat() if cov.oldest else None,
           "newest": cov.newest.isoformat() if cov.newest else None, "gaps": gaps, "longest_gap": cov.longest_gap,
           "missing_days": cov.missing_days, "files": read.files, "dated_by_name": read.dated_by_name,
           "dated_by_content": read.dated_by_content, "undated": read.undated, "bytes_read": read.bytes_read,
           "listing_sha256": read.listing_sha256, "error": read.error, "error_detail": read.error_detail,
           "status": status.value, "ruleset": {"version": ruleset.version, "sha256": ruleset.sha256}}
    if json_out:
        json.dump(doc, sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
        return
    table = Table(title=f"日志保存期限 / log retention · {escape(str(path))}", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    zh, en = STATUS_LABEL[status]
    rows = [
        ("结论 / verdict", f"{zh} [dim]{en}[/]"),
        ("今天 / today", f"{day.isoformat()} ({escape(tz_name)})"),
        ("须覆盖 / required", f"{doc['window_first']} – {doc['window_last']} "
                             f"({doc['retention_days']} 天 days; 允许缺失 gap allowance {doc['gap_allowance_days']})"),
        ("最早 / oldest", doc["oldest"] or "-"),
        ("最新 / newest", doc["newest"] or "-"),
        ("缺失 / gaps", "\n".join(a if a == b else f"{a} – {b}" for a, b in gaps) or "无 none"),
        ("文件 / files", f"{read.files}（按文件名 by name {read.dated_by_name}，按内容 by content "
                         f"{read.dated_by_content}，无法确定日期 undated {read.undated}）"),
        ("清单 SHA-256 / listing", read.listing_sha256 or "-"),
    ]
    if read.error:
        rows.append(("未读完 / incomplete", escape(f"{read.error}: {read.error_detail or ''}")))
    elif status is Status.INCONCLUSIVE:
        rows.append(("说明 / note", f"{read.undated} 个文件无法确定日期，可能含缺失日期的记录，请人工查看 / "
                                   f"{read.undated} file(s) could not be dated and may hold the missing days; look by hand"))
    for label, value in rows:
        table.add_row(label, value)
    out.print(table)


@app.command("check-profile")
def check_profile(profile: Annotated[Path, typer.Argument(help="场所档案 YAML / venue profile")]) -> None:
    """校验场所档案，逐条列出问题 / Validate a venue profile and list every problem."""
    try:
        prof = load_profile(profile)
    except ProfileError as exc:
        for line in exc.problems or [str(exc)]:
            err.print(line, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_REFUSED)
    for warning in prof.warnings:
        err.print(f"注意 warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"档案有效 / profile OK: {prof.venue.id} {prof.venue.name}", highlight=False)


def _agent(home: ProbeHome):
    try:
        return home.agent()
    except HomeError as exc:
        refuse(str(exc))


@app.command()
def keygen(
    home: HomeOption = None,
    probe_id: Annotated[Optional[str], typer.Option(help="探针编号（默认主机名）/ probe id (default: host name)")] = None,
) -> None:
    """生成探针签名密钥对（私钥 0600，不显示）/ Make the probe's Ed25519 key pair (private key 0600, never printed)."""
    h = open_home(home)
    try:
        ident = h.keygen(probe_id)
    except HomeError as exc:
        refuse(str(exc))
    out.print(f"探针 probe: {ident.probe_id}\n密钥编号 key id: {ident.key_id}\n公钥 public key: "
              f"{public_line(ident.public_key)}\n公钥文件 public key file (enroll this at the inspector device): "
              f"{h.public_key_path}\n登记码 enrollment code: {h.enrollment_code()}", highlight=False, markup=False, soft_wrap=True)


@app.command("pin-agent")
def pin_agent(
    url: Annotated[str, typer.Option(help="检查设备地址，例如 http://192.168.7.1:8765 / inspector device URL")],
    pubkey: Annotated[str, typer.Option(help="检查设备公钥文件或 ed25519:… 字符串 / the device's public key file "
                                             "or its ed25519:… line ('cafe-agent key' prints it)")],
    home: HomeOption = None,
) -> None:
    """记录检查设备地址并固定其回执公钥 / Pin the inspector device: its URL and receipt key."""
    try:
        text = public_line(load_public_key(Path(pubkey))) if Path(pubkey).is_file() else pubkey
        agent = open_home(home).pin_agent(url, text)
    except (KeyFileError, HomeError) as exc:
        refuse(str(exc))
    out.print(f"检查设备 agent: {agent.url} · 密钥编号 key id {agent.key_id}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def verify(
    report: Annotated[Path, typer.Argument(help="report.dsse.json")],
    pubkey: Annotated[Path, typer.Option(help="探针公钥文件 / the probe's public key file")],
) -> None:
    """离线验证报告：签名、类型、格式、旁边证据文件的 SHA-256 / Verify a report offline: signature, payload type,
    schema, and the SHA-256 of each evidence file beside it."""
    try:
        key = load_public_key(pubkey)
        verified, evidence = verify_report_file(report, key)
    except (KeyFileError, ReportError) as exc:
        err.print(f"验证失败 / NOT VERIFIED: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    p = verified.payload
    out.print(f"验证通过 / VERIFIED: report {p.report_id} · venue {p.venue.id} {p.venue.name} · "
              f"{p.started_at.isoformat(timespec='seconds')} · probe {p.probe.id} key {verified.key_id[:16]}… · "
              f"sha256 {verified.sha256}", highlight=False, markup=False, soft_wrap=True)
    out.print(f"证据文件相符 / evidence matched: {', '.join(evidence.matched) or '-'}"
              + (f"; 不在旁边 / not present: {', '.join(evidence.absent)}" if evidence.absent else ""),
              highlight=False, markup=False, soft_wrap=True)


def _print_result(result: SendResult) -> None:
    mark = {"sent": "已送达 sent", "recovered": "已恢复 recovered"}.get(result.outcome, f"未送达 {result.outcome}")
    err.print(f"{result.report_id} {mark}: {result.detail}", markup=False, highlight=False, soft_wrap=True)


def _send_and_print(home: ProbeHome, attempts: int = 5) -> None:
    agent = _agent(home)
    results = send_outbox(Outbox(home.outbox_path), agent, attempts=attempts, on_result=_print_result)
    failed = [r for r in results if r.outcome not in ("sent", "recovered")]
    if not results:
        err.print("发件箱为空 / nothing to send", markup=False, highlight=False, soft_wrap=True)
    if failed:
        err.print(f"{len(failed)} 份报告仍在发件箱，稍后再试 / {len(failed)} report(s) stay in the outbox; "
                  "run 'cafe-probe send' again later", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(3)


@app.command()
def send(
    home: HomeOption = None,
    attempts: Annotated[int, typer.Option(help="每份报告最多尝试次数 / attempts per report at most")] = 5,
) -> None:
    """把发件箱中的报告发到检查设备，核验回执后移入 sent/ / Send the outbox to the inspector device; a report
    moves to sent/ only after its signed receipt is verified and stored. Exit 3 when some remain."""
    if not 1 <= attempts <= 20:
        refuse("--attempts 须在 1–20 之间 / --attempts must be within 1–20")
    _send_and_print(open_home(home), attempts)


@app.command()
def outbox(home: HomeOption = None) -> None:
    """列出发件箱 / List the outbox: pending and sent reports."""
    box = Outbox(open_home(home).outbox_path)
    pending, sent = box.pending(), box.sent()
    for entry in pending:
        out.print(f"待发送 pending  {entry.report_id}" + (" (回执已在 receipt stored)" if entry.receipt else ""),
                  highlight=False, markup=False, soft_wrap=True)
    for entry in sent:
        out.print(f"已送达 sent     {entry.report_id}", highlight=False, markup=False, soft_wrap=True)
    out.print(f"待发送 {len(pending)} pending · 已送达 {len(sent)} sent · {box.root}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def version() -> None:
    """版本与规则库 / Version and ruleset."""
    try:
        rs = load_ruleset()
        out.print(f"cafe-probe {__version__} · ruleset {rs.version} sha256 {rs.sha256}", highlight=False)
    except RulesError as exc:
        out.print(f"cafe-probe {__version__} · ruleset invalid: {exc}", highlight=False)


# Commands kept in their own modules register themselves on ``app`` (from probe.cli_common) when imported.
# One per line, in this order: it is the order of the commands in --help.
from probe import cli_stage  # noqa: E402,F401
from probe import cli_selftest  # noqa: E402,F401
from probe import cli_hardware  # noqa: E402,F401
from probe import cli_autorun  # noqa: E402,F401


if __name__ == "__main__":
    app()
