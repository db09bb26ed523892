"""Probe install: the autorun unit, the hardware profile choice, the LED udev rule, the service user.

``install("pi4", root=Path("/"), venv=Path("/opt/cafe-probe/.venv"))`` lays down, under ``root``:

* ``etc/systemd/system/cafe-probe-autorun.service``: the template of ``hardware/systemd/`` with the
  venv's ``cafe-probe``, the service user and its capabilities filled in;
* ``etc/cafe-probe/hardware.yaml``: ``profile: pi4``. A technician's overrides in an existing file naming
  the same profile are kept; one naming another profile is moved to ``hardware.yaml.old`` first;
* ``etc/udev/rules.d/90-cafe-probe-leds.rules``: one line per LED name of the effective profile
  (overrides included) and none for any other LED;
* ``var/lib/cafe-probe`` (0700, owned by the service user);
* the system user itself (``useradd --system``), only on the real root and only when it is missing;

then, only on the real root, ``systemctl daemon-reload`` + ``enable`` (when systemd runs and
``systemctl=True``) and ``udevadm control --reload`` + ``trigger`` of the LED class (when udevd runs).
Anything skipped is reported with the reason. Running it again changes nothing that is already right.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from hardware.profiles import PROFILE_NAMES, HardwareError, HardwareProfile, load_hardware

__all__ = ["InstallError", "Step", "UNIT_NAME", "install", "render_udev_rule", "render_unit"]

HERE = Path(__file__).parent
UNIT_NAME = "cafe-probe-autorun.service"
UNIT_TEMPLATE = HERE / "systemd" / UNIT_NAME
RULE_NAME = "90-cafe-probe-leds.rules"
RULE_TEMPLATE = HERE / "udev" / RULE_NAME
UNIT_PATH = Path("etc/systemd/system") / UNIT_NAME
HARDWARE_PATH = Path("etc/cafe-probe/hardware.yaml")
RULE_PATH = Path("etc/udev/rules.d") / RULE_NAME
NM_PATH = Path("etc/NetworkManager/conf.d/90-cafe-probe.conf")
STATE_PATH = Path("var/lib/cafe-probe")
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")
# Where the unit's ProtectHome= and PrivateTmp= hide files from the service: its code must live elsewhere.
HIDDEN = tuple(Path(p) for p in ("/home", "/root", "/run/user", "/tmp", "/var/tmp"))
# The code the service will import (the source tree of an editable install, else site-packages).
CODE_DIR = HERE.resolve().parent


class InstallError(Exception):
    """The install cannot go on; the message is one line."""


@dataclass(frozen=True)
class Step:
    """One thing the install did or left: ``action`` is wrote / unchanged / created / ran / skipped."""

    action: str
    target: str
    note: str = ""

    def line(self) -> str:
        """``写入 wrote  /etc/…`` (and the note), for the technician."""
        words = {"wrote": "写入 wrote", "unchanged": "未变 unchanged", "created": "创建 created",
                 "ran": "执行 ran", "skipped": "跳过 skipped"}
        return f"{words.get(self.action, self.action):<16} {self.target}" + (f"  ({self.note})" if self.note else "")


def _template(path: Path) -> list[str]:
    """The template's lines, without its '#@' notes (they speak of the template, not of what is installed)."""
    return [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#@")]


def _fill(template: str, values: dict[str, str], source: Path) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    left = _PLACEHOLDER.findall(template)
    if left:
        raise InstallError(f"{source}: 未填写的占位符 / placeholders left unfilled: {', '.join(sorted(set(left)))}")
    return template


def render_unit(profile: HardwareProfile, cafe_probe: Path) -> str:
    """The autorun unit for ``profile``, running ``cafe_probe`` (an absolute path)."""
    if not cafe_probe.is_absolute() or any(ch.isspace() or ch in "%$\\\"'" for ch in str(cafe_probe)):
        raise InstallError(f"cafe-probe 路径须为绝对路径且不含空白或特殊字符 / the cafe-probe path must be absolute, "
                           f"without blanks or quoting characters: {cafe_probe}")
    return _fill("\n".join(_template(UNIT_TEMPLATE)) + "\n",
                 {"CAFE_PROBE": str(cafe_probe), "USER": profile.capture.user,
                  "CAPABILITIES": " ".join(profile.capture.capabilities)}, UNIT_TEMPLATE)


def render_udev_rule(profile: HardwareProfile) -> str:
    """The udev rule: the template's ``@LED@`` line once per LED name of ``profile``, nothing else."""
    group = profile.capture.user  # useradd --user-group: the user's own group
    lines: list[str] = []
    for line in _template(RULE_TEMPLATE):
        if "@LED@" not in line:
            lines.append(_fill(line, {"GROUP": group}, RULE_TEMPLATE))
            continue
        names = profile.all_led_names()
        if not names:
            lines.append(f"# 硬件档案 {profile.name} 未列出指示灯 / hardware profile {profile.name} names no LED")
        lines.extend(_fill(line, {"LED": name, "GROUP": group}, RULE_TEMPLATE) for name in names)
    return "\n".join(lines) + "\n"


def render_network_manager(profile: HardwareProfile) -> str:
    """A NetworkManager drop-in leaving the café port alone.

    Raspberry Pi OS (Bookworm) and most laptops run NetworkManager, which would start a DHCP client on the
    café port the moment the cable goes in: a lease taken from the café, which the probe must never do.
    Unmanaged, the port stays up without an address; the autorun adds the run's own address and removes it.
    """
    spec = profile.cafe_port
    names = [spec.name] if spec.name is not None else list(spec.match or [])
    devices = ";".join(f"interface-name:{n}" for n in names)
    return ("# cafe-probe: the café port takes no DHCP lease; NetworkManager leaves it alone.\n"
            "# cafe-probe：网吧端口不申请 DHCP 租约，NetworkManager 不管理它。\n"
            f"[keyfile]\nunmanaged-devices={devices}\n")


def _put(root: Path, rel: Path, text: str, mode: int) -> Step:
    path = root / rel
    target = "/" + rel.as_posix()
    if path.is_file() and path.read_text(encoding="utf-8") == text and path.stat().st_mode & 0o7777 == mode:
        return Step("unchanged", target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)  # never a half-written unit or rule, even if interrupted
    return Step("wrote", target)


def _hardware_file(root: Path, name: str) -> list[Step]:
    path = root / HARDWARE_PATH
    target = "/" + HARDWARE_PATH.as_posix()
    if path.is_file():
        try:
            current = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeError, yaml.YAMLError):
            current = None
        if isinstance(current, dict) and current.get("profile") == name:
            return [Step("unchanged", target, "保留其中的覆盖项 / overrides in it kept")]
        os.replace(path, path.with_name("hardware.yaml.old"))
        moved = Step("wrote", target + ".old", "原文件另存 / the previous file, moved aside")
    else:
        moved = None
    text = (f"# cafe-probe 硬件档案 / hardware profile (written by `cafe-probe install --hardware {name}`).\n"
            f"# 可在下面覆盖档案中的顶层键 / top-level keys of the profile may be overridden below, e.g.\n"
            f"#   cafe_port: {{name: eth1}}\n"
            f"#   officer_link: {{name: eth2, kind: usb-ethernet}}\n"
            f"profile: {name}\n")
    return ([moved] if moved else []) + [_put(root, HARDWARE_PATH, text, 0o644)]


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _run(argv: list[str]) -> Step:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise InstallError(f"{' '.join(argv)} 失败 / failed (exit {done.returncode}): "
                           f"{reason[-1] if reason else 'no message'}")
    return Step("ran", " ".join(argv))


def install(hardware: str, *, root: Path = Path("/"), venv: Path, systemctl: bool = True) -> list[Step]:
    """Install the probe service for ``hardware`` (pi4 | pi5 | laptop) under ``root``; see the module text.

    Raises :class:`InstallError` (one line) when it cannot; what it did before stays (each step is whole)."""
    if hardware not in PROFILE_NAMES:
        raise InstallError(f"未知的硬件 {hardware!r} / unknown hardware {hardware!r} (one of {', '.join(PROFILE_NAMES)})")
    if not root.is_absolute() or not venv.is_absolute():
        raise InstallError("--root 与 --venv 须为绝对路径 / --root and --venv must be absolute paths")
    real_root = root.resolve() == Path("/")
    cafe_probe = venv / "bin" / "cafe-probe"
    steps: list[Step] = []
    hidden = [str(p) for p in (venv, CODE_DIR) if any(p.is_relative_to(h) for h in HIDDEN)]
    if real_root and hidden:
        raise InstallError(f"服务看不到 {hidden[0]}（ProtectHome、PrivateTmp）；请把 cafe-probe 放在 /opt/cafe-probe 并从那里"
                           f"运行 setup.sh / the service cannot see {hidden[0]} (ProtectHome=, PrivateTmp=): put "
                           f"cafe-probe in /opt/cafe-probe and run setup.sh from there")
    if not (root / cafe_probe.relative_to("/")).is_file():
        if real_root:
            raise InstallError(f"没有 {cafe_probe}（先运行 bash setup.sh install）/ no {cafe_probe} "
                               f"(run bash setup.sh install first, or give --venv)")
        steps.append(Step("skipped", f"{cafe_probe} 存在？exists?", f"不在 {root} 下，未查 / not under {root}"))

    steps += _hardware_file(root, hardware)
    try:  # the effective profile, overrides included: the rule must name the LEDs the service will use
        profile = load_hardware(root / HARDWARE_PATH)
    except HardwareError as exc:
        raise InstallError(str(exc)) from None
    steps.append(_put(root, UNIT_PATH, render_unit(profile, cafe_probe), 0o644))
    steps.append(_put(root, RULE_PATH, render_udev_rule(profile), 0o644))
    steps.append(_put(root, NM_PATH, render_network_manager(profile), 0o644))

    user = profile.capture.user
    if not real_root:
        steps.append(Step("skipped", f"useradd {user}", f"--root {root}：只在本机根目录创建 / only on the real root"))
    elif _user_exists(user):
        steps.append(Step("unchanged", f"user {user}"))
    else:
        steps.append(_run(["useradd", "--system", "--user-group", "--no-create-home",
                           "--home-dir", "/" + STATE_PATH.as_posix(), "--shell", "/usr/sbin/nologin",
                           "--comment", "cafe-probe autorun", user]))

    steps.append(_state_dir(root, user, real_root))
    steps += _reload(real_root, systemctl)
    return steps


def _state_dir(root: Path, user: str, real_root: bool) -> Step:
    path = root / STATE_PATH
    target = "/" + STATE_PATH.as_posix()
    existed = path.is_dir()
    path.mkdir(parents=True, exist_ok=True)
    changed = not existed or path.stat().st_mode & 0o7777 != 0o700
    os.chmod(path, 0o700)
    note = "0700"
    if real_root:
        entry = pwd.getpwnam(user)
        if (path.stat().st_uid, path.stat().st_gid) != (entry.pw_uid, entry.pw_gid):
            # The directory only; systemd's StateDirectory= re-owns what is below it at the service's start.
            os.chown(path, entry.pw_uid, entry.pw_gid)
            changed = True
        note += f" {user}"
    else:
        note += "，属主未改（--root）/ owner left as is (--root)"
    return Step("created" if not existed else ("wrote" if changed else "unchanged"), target, note)


def _reload(real_root: bool, systemctl: bool) -> list[Step]:
    steps: list[Step] = []
    if not real_root:
        return [Step("skipped", "systemctl, udevadm", "--root：不是本机 / not this machine's root")]
    if not systemctl:
        steps.append(Step("skipped", "systemctl", "--no-systemctl"))
    elif not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        steps.append(Step("skipped", "systemctl", "systemd 未运行 / systemd is not running here"))
    else:
        steps.append(_run(["systemctl", "daemon-reload"]))
        steps.append(_run(["systemctl", "enable", UNIT_NAME]))
    if not Path("/run/udev/control").exists() or shutil.which("udevadm") is None:
        steps.append(Step("skipped", "udevadm", "udevd 未运行 / udevd is not running here"))
    else:
        steps.append(_run(["udevadm", "control", "--reload"]))
        steps.append(_run(["udevadm", "trigger", "--action=add", "--subsystem-match=leds"]))
    return steps
