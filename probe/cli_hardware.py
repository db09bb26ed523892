"""``cafe-probe install`` (the probe service on this machine) and ``cafe-probe led`` (try the LED patterns).

Registered on :data:`probe.cli.app` when probe/cli.py imports this module.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from hardware.install import InstallError, install as install_probe
from hardware.led import PATTERN_NAMES, LedPatternError, StatusLed, load_patterns
from hardware.profiles import PROFILE_NAMES, HardwareError, load_hardware
from probe.cli_common import app, err, out, refuse

HardwareOption = Annotated[Optional[str], typer.Option(
    "--hardware", help="硬件档案：pi4、pi5、laptop 或 YAML 文件（默认 /etc/cafe-probe/hardware.yaml，否则自动识别）/ "
                       "hardware profile: pi4, pi5, laptop or a YAML file (default: /etc/cafe-probe/hardware.yaml, "
                       "else detected)")]


def _say(text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)


@app.command("install")
def install_command(
    hardware: Annotated[str, typer.Option("--hardware", help=f"硬件 / hardware: {' | '.join(PROFILE_NAMES)}")],
    root: Annotated[Path, typer.Option(help="安装到此根目录（制作镜像时）/ install under this root (building an "
                                            "image); user and services are only touched on /")] = Path("/"),
    venv: Annotated[Optional[Path], typer.Option(help="cafe-probe 所在的虚拟环境（默认当前的）/ the venv holding "
                                                      "cafe-probe (default: the one running this)")] = None,
    no_systemctl: Annotated[bool, typer.Option("--no-systemctl", help="不执行 systemctl daemon-reload / enable / "
                                                                      "do not run systemctl")] = False,
) -> None:
    """安装探针自动运行服务：systemd 单元、硬件档案、指示灯 udev 规则、服务用户 / Install the probe's autorun
    service: the systemd unit, the hardware profile, the LED udev rule, the service user. Safe to run again."""
    if hardware not in PROFILE_NAMES:
        refuse(f"未知的硬件 {hardware!r} / unknown hardware {hardware!r} (one of {', '.join(PROFILE_NAMES)})")
    chosen_venv = (venv or Path(sys.prefix)).absolute()
    try:
        steps = install_probe(hardware, root=root.absolute(), venv=chosen_venv, systemctl=not no_systemctl)
    except (InstallError, OSError) as exc:
        refuse(str(exc))
    for step in steps:
        _say(step.line())
    _say(f"已安装 installed: {hardware} · 服务 service cafe-probe-autorun (下次开机启动 / starts at the next boot; "
         f"now: systemctl start cafe-probe-autorun) · 试指示灯 try the LED: cafe-probe led --hardware {hardware}")


@app.command("led")
def led_command(
    pattern: Annotated[Optional[str], typer.Argument(help=f"指示灯模式（默认依次显示全部）/ pattern (default: each "
                                                          f"in turn): {', '.join(PATTERN_NAMES)}")] = None,
    hardware: HardwareOption = None,
    seconds: Annotated[float, typer.Option(help="每种模式显示的秒数 / seconds each pattern is shown")] = 6.0,
) -> None:
    """试显示指示灯模式，供技术人员核对 / Show the status LED patterns, for a technician to check them by eye.
    Exit 1 when an LED of the profile is missing or cannot be written."""
    if pattern is not None and pattern not in PATTERN_NAMES:
        refuse(f"未知的模式 {pattern!r} / unknown pattern {pattern!r} (one of {', '.join(PATTERN_NAMES)})")
    if not 0.5 <= seconds <= 600:
        refuse("--seconds 须在 0.5–600 之间 / --seconds must be within 0.5–600")
    try:
        profile = load_hardware(hardware)
        patterns = load_patterns()
    except (HardwareError, LedPatternError) as exc:
        refuse(str(exc))
    leds = profile.leds
    _say(f"硬件 hardware: {profile.name} ({profile.source}) · " + (
        " · ".join(f"{role}: {path}" for role, path in leds.items()) if leds
        else "没有指示灯，模式只写入日志 / no LED: patterns are only logged"))
    # The LED's problems are printed once below; without a handler, logging would print them a second time.
    logging.getLogger("cafe_probe.led").addHandler(logging.NullHandler())
    led = StatusLed(leds, patterns=patterns)
    try:
        for name in [pattern] if pattern else list(PATTERN_NAMES):
            led.set(name)
            _say(f"{name}: {patterns[name].zh} / {patterns[name].en}")
            if len(led.problems) < len(leds):  # at least one LED shows it
                time.sleep(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        led.close()
    for problem in led.problems:
        err.print(f"cafe-probe: {problem}", markup=False, highlight=False, soft_wrap=True)
    if led.problems:
        raise typer.Exit(1)
