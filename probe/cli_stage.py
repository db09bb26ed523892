"""``cafe-probe stage``, ``pin-department`` and ``enrollment``: loading task packs and enrolling the probe.

Registered on :data:`probe.cli.app` when probe/cli.py imports this module.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional
from zoneinfo import ZoneInfo

import typer
from rich.table import Table
from rich.text import Text

from probe.cli_common import app, HomeOption, open_home, out, refuse
from probe.home import HomeError, ProbeHome
from probe.keys import KeyFileError, load_public_key, public_line
from probe.run import DEFAULT_TZ
from probe.staging import StagedEntry, Staging
from probe.taskpack import MAX_PACK_BYTES, OpenedPack, PackRefused

STATUS_LABEL = {"valid": "有效 valid", "expired": "已过期 expired", "not_yet": "未生效 not yet valid",
                "refused": "拒绝 refused"}


def _when(moment: datetime | None) -> str:
    """A time in the default zone with its UTC offset, as every user-facing time is shown."""
    if moment is None:
        return "-"
    return moment.astimezone(ZoneInfo(DEFAULT_TZ)).isoformat(timespec="seconds")


def _say(text: str) -> None:
    # Pack content (venue names, URLs) comes from outside: never read as markup.
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def _show_pack(home: ProbeHome, pack: OpenedPack, entry: StagedEntry | None) -> None:
    p = pack.payload
    names = {d.key_id: d.name for d in home.pinned_departments()}
    status = STATUS_LABEL[entry.status] if entry else STATUS_LABEL["valid"]
    lines = [
        f"已暂存 / staged: {p.pack_id}",
        f"任务 task: {p.task.id}" + (f" {p.task.name}" if p.task.name else "")
        + (f" ({p.task.check_start} – {p.task.check_end})" if p.task.check_start or p.task.check_end else ""),
        f"有效期 valid: {_when(p.not_before)} – {_when(p.not_after)} · 状态 status: {status}",
        f"场所 venues ({len(p.venues)}):",
    ]
    for v in p.venues:
        badges = ", ".join(v.inspectors) or "-"
        lines.append(f"  {v.venue_id} {v.name} · 检查人员 inspectors: {badges}"
                     + (f" · 密钥文件 secret files: {len(v.secret_paths)}（已加密 sealed）" if v.secret_paths else ""))
    lines += [
        f"检查设备 agent: {p.agent.url} · 密钥编号 key id {p.agent.key_id[:16]}…（已固定 pinned）",
        f"签发 signer: {p.issuer.name} · 密钥编号 key id {pack.signer_key_id[:16]}…"
        + (f"（已登记为 pinned as {names[pack.signer_key_id]}）" if pack.signer_key_id in names else ""),
        f"规则库 ruleset: {p.ruleset.version} · sha256 {p.ruleset.sha256[:16]}…",
    ]
    for line in lines:
        _say(line)


def _list(staging: Staging) -> None:
    entries = staging.entries()
    if not entries:
        _say(f"没有暂存的任务包 / no task packs staged in {staging.directory}")
        return
    table = Table(title=Text(f"暂存任务包 / staged task packs · {staging.directory}"))
    table.add_column("任务包 pack", no_wrap=True)
    table.add_column("任务 task", overflow="fold")
    table.add_column("状态 status", overflow="fold")
    table.add_column("有效至 valid until", no_wrap=True)
    table.add_column("场所 venues", overflow="fold")
    for e in entries:
        status = STATUS_LABEL[e.status] + (f"\n{e.reason}" if e.status == "refused" else "")
        table.add_row(Text(e.pack_id), Text(e.task_id or "-"), Text(status), Text(_when(e.not_after)),
                      Text(", ".join(e.venues) or "-"))
    out.print(table)
    counts = {s: sum(e.status == s for e in entries) for s in STATUS_LABEL}
    _say(f"有效 {counts['valid']} valid · 未生效 {counts['not_yet']} not yet valid · 已过期 {counts['expired']} "
         f"expired · 拒绝 {counts['refused']} refused")


@app.command()
def stage(
    pack_file: Annotated[Optional[Path], typer.Argument(help="任务包文件（部门服务器导出的 .dsse.json）/ task pack "
                                                            "file exported by the department server")] = None,
    list_: Annotated[bool, typer.Option("--list", help="列出暂存的任务包及其状态 / list the staged packs and their "
                                                         "status")] = False,
    remove: Annotated[Optional[str], typer.Option("--remove", metavar="PACK_ID",
                                                  help="移除一个暂存的任务包 / remove one staged pack")] = None,
    prune: Annotated[bool, typer.Option("--prune", help="移除所有已过期的任务包 / remove every expired "
                                                         "pack")] = False,
    home: HomeOption = None,
) -> None:
    """暂存任务包：核验部门签名、本探针、有效期、规则库，固定检查设备 / Stage a task pack: checks the department's
    signature, that it is for this probe, its validity window and ruleset, and pins its inspector device."""
    chosen = [x for x in (pack_file is not None, list_, remove is not None, prune) if x]
    if len(chosen) != 1:
        refuse("请给出任务包文件，或 --list、--remove、--prune 之一 / give a pack file, or one of --list, --remove, "
                "--prune")
    h = open_home(home)
    staging = Staging(h)
    if list_:
        _list(staging)
        return
    try:
        if remove is not None:
            gone = staging.remove(remove)
            _say(f"已移除 / removed: {gone.pack_id} ({STATUS_LABEL[gone.status]})")
            return
        if prune:
            pruned = staging.prune()
            for e in pruned:
                _say(f"已移除过期任务包 / removed expired pack: {e.pack_id} (任务 task {e.task_id}, 至 until "
                     f"{_when(e.not_after)})")
            _say(f"移除 {len(pruned)} 个 / {len(pruned)} removed")
            return
        assert pack_file is not None
        try:
            with open(pack_file, "rb") as fh:
                data = fh.read(MAX_PACK_BYTES * 2 + 1)
        except OSError as exc:
            refuse(f"无法读取 / cannot read {pack_file}: {exc.strerror}")
        pack = staging.stage(data)
        entry = next((e for e in staging.entries() if e.pack_id == pack.payload.pack_id), None)
        _show_pack(h, pack, entry)
    except (PackRefused, HomeError) as exc:
        refuse(f"任务包未暂存 / pack not staged: {exc}" if pack_file is not None else str(exc))


@app.command("pin-department")
def pin_department(
    pubkey: Annotated[Optional[str], typer.Option(help="部门公钥文件或 ed25519:… 字符串 / the department's public "
                                                       "key file or its ed25519:… line")] = None,
    name: Annotated[Optional[str], typer.Option(help="部门名称 / the department's name")] = None,
    remove: Annotated[Optional[str], typer.Option("--remove", metavar="KEY_ID",
                                                  help="不再信任此密钥编号（可写前缀）/ stop trusting this key id "
                                                       "(a unique prefix will do)")] = None,
    list_: Annotated[bool, typer.Option("--list", help="列出已登记的部门公钥 / list the pinned department "
                                                         "keys")] = False,
    home: HomeOption = None,
) -> None:
    """登记部门公钥：只接受其签名的任务包（可同时登记多把，用于换钥）/ Pin a department key: only packs it signed are
    staged (several may be pinned while a key is rotated)."""
    h = open_home(home)
    try:
        if list_ or remove is not None:
            if pubkey is not None or name is not None or (list_ and remove is not None):
                refuse("--list、--remove 不与其他选项同用 / --list and --remove go alone")
            if remove is not None:
                gone = h.unpin_department(remove)
                _say(f"已移除部门公钥 / unpinned: {gone.name} · 密钥编号 key id {gone.key_id}")
                return
            pinned = h.pinned_departments()
            for d in pinned:
                _say(f"{d.key_id}  {d.name}  (登记于 pinned {d.pinned_at})")
            _say(f"已登记 {len(pinned)} 把部门公钥 / {len(pinned)} department key(s) pinned")
            return
        if pubkey is None or name is None:
            refuse("需要 --pubkey 与 --name / --pubkey and --name are required")
        text = public_line(load_public_key(Path(pubkey))) if Path(pubkey).is_file() else pubkey
        pinned_one = h.pin_department(text, name)
    except (KeyFileError, HomeError) as exc:
        refuse(str(exc))
    count = len(h.departments())
    _say(f"部门 department: {pinned_one.name} · 密钥编号 key id {pinned_one.key_id} · 共登记 {count} 把 / {count} "
         "key(s) pinned")


@app.command()
def enrollment(home: HomeOption = None) -> None:
    """显示登记码（探针编号与公钥，可做成二维码），交给部门服务器；不含私钥 / Print the enrollment code (probe id and
    public key, QR-sized) for the department server; nothing secret."""
    h = open_home(home)
    try:
        code = h.enrollment_code()
        ident = h.identity()
    except HomeError as exc:
        refuse(str(exc))
    _say(f"登记码 enrollment code: {code}")
    _say(f"探针 probe: {ident.probe_id} · 密钥编号 key id: {ident.key_id}")
    _say(f"公钥文件 public key file: {h.public_key_path}")
