"""``cafe-probe selftest``: is this probe ready to be handed to an officer?

Registered on :data:`probe.cli.app` when probe/cli.py imports this module.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from hardware.profiles import HardwareError, load_hardware
from probe.selftest import ITEM_LABELS, run_selftest
from probe.cli_common import app, HomeOption, open_home, out, refuse


@app.command()
def selftest(
    hardware: Annotated[Optional[str], typer.Option(
        "--hardware", help="硬件档案：pi4、pi5、laptop 或 YAML 文件（默认 /etc/cafe-probe/hardware.yaml，否则自动识别）/ "
                           "hardware profile: pi4, pi5, laptop or a YAML file (default: /etc/cafe-probe/hardware.yaml, "
                           "else detected)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="输出 JSON 而不是表格 / print JSON")] = False,
    home: HomeOption = None,
) -> None:
    """自检：接口与载波、时钟、密钥、任务包、规则库、发件箱、磁盘、原始套接字、指示灯 / Self-test: ports and carrier,
    clock, keys, staged packs, ruleset, outbox, disk, raw sockets, LEDs. Exit 0 when all pass, 1 when any fails."""
    try:
        profile = load_hardware(hardware)
    except HardwareError as exc:
        refuse(str(exc))
    probe_home = open_home(home)
    items = run_selftest(probe_home, profile)
    passed = all(item.ok for item in items)
    if json_out:
        doc = {"ok": passed, "hardware": profile.name, "hardware_file": str(profile.source),
               "home": str(probe_home.root), "items": [item.as_json() for item in items]}
        json.dump(doc, sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    else:
        # Reasons carry paths, URLs and pack text: plain Text cells, never read as markup.
        table = Table(title=Text(f"自检 / self-test · {profile.name} · {probe_home.root}"))
        table.add_column("项目 / item", no_wrap=True)
        table.add_column("结果 / result", no_wrap=True)
        table.add_column("原因 / reason", overflow="fold")
        for item in items:
            zh, en = ITEM_LABELS.get(item.key, (item.key, item.key))
            verdict = Text("通过 pass", style="green") if item.ok else Text("失败 FAIL", style="bold red")
            table.add_row(Text(f"{zh} / {en}"), verdict, Text(item.reason))
        out.print(table)
        failed = sum(not item.ok for item in items)
        out.print(Text("全部通过 / all passed" if passed else f"{failed} 项失败 / {failed} item(s) failed"))
    raise typer.Exit(0 if passed else 1)
