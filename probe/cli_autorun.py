"""``cafe-probe autorun``: the headless probe's service (probe/autorun.py), as the systemd unit starts it.

Registered on :data:`probe.cli.app` when probe/cli.py imports this module.
"""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path
from typing import Annotated, Optional
from zoneinfo import ZoneInfo

import typer

from probe.cli_common import app, HomeOption, open_home, refuse
from probe.home import HomeError
from probe.run import DEFAULT_TZ


@app.command()
def autorun(
    hardware: Annotated[Optional[str], typer.Option(
        help="硬件档案：pi4、pi5、laptop 或 YAML 文件（默认按 /etc/cafe-probe/hardware.yaml 或自动识别）/ hardware "
             "profile: pi4, pi5, laptop or a YAML file (default: /etc/cafe-probe/hardware.yaml, else detected)")] = None,
    home: HomeOption = None,
    once: Annotated[bool, typer.Option("--once", help="只处理一次插入，然后退出 / handle one plug-in, then exit")] = False,
    wait_timeout: Annotated[Optional[float], typer.Option(
        help="等待网线或送达的最长秒数（默认一直等）/ longest wait in seconds for the cable or the delivery "
             "(default: for ever)")] = None,
    leds_root: Annotated[Optional[Path], typer.Option(
        help="指示灯目录（默认硬件档案中的 /sys/class/leds）/ LED class directory (default: the profile's)")] = None,
    timezone: Annotated[str, typer.Option(help="场所时区 / venue time zone")] = DEFAULT_TZ,
) -> None:
    """无人值守运行：等待插入网吧交换机，识别场所，检查，发送报告 / Headless: wait for the café link, identify the
    venue, inspect, and deliver the report over the officer link. One JSON line per step in HOME/autorun.log and
    on stdout. --once exit codes: 0 delivered, 3 report still in the outbox, 4 not run (no venue identified or
    refused), 5 no carrier within --wait-timeout."""
    from hardware.profiles import HardwareError, load_hardware, resolve_ports
    from probe.autorun import Autorun, AutorunConfig

    if wait_timeout is not None and wait_timeout <= 0:
        refuse("--wait-timeout 须大于 0 / --wait-timeout must be above 0")
    try:
        tz = ZoneInfo(timezone)
    except Exception:  # noqa: BLE001 - any unknown zone name is the same user error
        refuse(f"未知时区 / unknown time zone: {timezone}")
    try:
        profile = load_hardware(hardware)
        if leds_root is not None:
            profile = dataclasses.replace(profile, leds_root=leds_root)
        cafe_port, officer_link = resolve_ports(profile)
    except HardwareError as exc:
        refuse(str(exc))
    probe_home = open_home(home)
    try:
        probe_home.identity()
    except HomeError as exc:
        refuse(str(exc))
    runner = Autorun(AutorunConfig(home=probe_home, cafe_port=cafe_port, officer_link=officer_link,
                                   leds=profile.leds, clock_tolerance=profile.clock_tolerance,
                                   hardware_name=profile.name, once=once, wait_timeout=wait_timeout, tz=tz))
    # SIGTERM (systemctl stop) and Ctrl-C end the loop cleanly: a run in progress ends as incomplete at its
    # next stage boundary, addresses are removed and the report is queued.
    signal.signal(signal.SIGTERM, lambda signum, frame: runner.request_stop())
    signal.signal(signal.SIGINT, lambda signum, frame: runner.request_stop())
    raise typer.Exit(runner.run())
