"""``cafe-probe selftest``: everything a headless probe needs before it is handed to an officer.

Each item passes or fails with its reason (Chinese / English) and the facts it
rests on (``detail``): the ports and their carrier, the clock, the keys and
their modes, the staged packs, the ruleset, the outbox, the disk, the right to
open raw sockets, and the LEDs. Nothing here changes the probe's state: the
clock is only read, the outbox gets one temporary file that is removed again,
the raw socket is opened and closed without binding or sending, and the LEDs
are checked for write permission without being written.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from probe.clock import DEFAULT_TZ, check_clock
from hardware.profiles import HardwareError, HardwareProfile, list_interfaces, resolve_port
from probe.dsse import EnvelopeError, parse_envelope
from probe.home import HomeError, ProbeHome
from probe.iface import InterfaceError, inspect_interface
from probe.keys import KeyFileError, key_id, load_public_key
from probe.observations import ClockCheck
from probe.outbox import Outbox, OutboxFull
from probe.report import fsync_dir
from probe.rules import RulesError, load_ruleset
from probe.staging import StagedEntry, Staging
from probe.taskpack import PackPayload

__all__ = ["SelfTestItem", "ITEM_LABELS", "run_selftest", "check_interfaces", "check_keys", "check_packs",
           "check_ruleset", "check_outbox", "check_disk", "check_raw_socket", "check_leds"]

# Item key -> (中文, English) label, in the order the items are run and shown.
ITEM_LABELS: dict[str, tuple[str, str]] = {
    "interfaces": ("接口与载波", "interfaces and carrier"),
    "clock": ("时钟", "clock"),
    "keys": ("密钥与文件权限", "keys and file modes"),
    "packs": ("暂存任务包", "staged task packs"),
    "ruleset": ("规则库", "ruleset"),
    "outbox": ("发件箱", "outbox"),
    "disk": ("磁盘空间", "free disk"),
    "raw_socket": ("原始套接字权限", "raw-socket permission"),
    "leds": ("指示灯", "LEDs"),
}
MIB = 1024 * 1024


@dataclass(frozen=True)
class SelfTestItem:
    """One item's verdict: ``reason`` is one line, Chinese then English; ``detail`` is JSON-ready."""

    key: str
    ok: bool
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The item as plain JSON data."""
        return asdict(self)


def _joined(problems: list[tuple[str, str]]) -> str:
    """Several (zh, en) problems as one line: all Chinese, then all English."""
    return "；".join(zh for zh, _ in problems) + " / " + "; ".join(en for _, en in problems)


def _pair(text: str) -> tuple[str, str]:
    """A one-line "中文 / English" message split into its halves (the whole text twice when it has no " / ")."""
    zh, sep, en = text.partition(" / ")
    return (zh, en) if sep else (text, text)


def _item(key: str, problems: list[tuple[str, str]], fine: tuple[str, str], detail: dict[str, Any]) -> SelfTestItem:
    return SelfTestItem(key, not problems, _joined(problems or [fine]), detail)


# -- interfaces ------------------------------------------------------------------------------------------------

def check_interfaces(hardware: HardwareProfile) -> SelfTestItem:
    """Both ports of the profile found among the interfaces present, each up with carrier.

    An unplugged café port fails too: at the technician's bench that is
    expected, and the table says so plainly rather than hiding it.
    """
    try:
        present = list_interfaces()
    except HardwareError as exc:
        return SelfTestItem("interfaces", False, str(exc), {})
    problems: list[tuple[str, str]] = []
    detail: dict[str, Any] = {"present": present}
    resolved: dict[str, str] = {}
    for role, spec, words in (("cafe_port", hardware.cafe_port, ("网吧端口", "café port")),
                              ("officer_link", hardware.officer_link, ("检查设备链路", "officer link"))):
        try:
            name = resolve_port(spec, role, present)
        except HardwareError as exc:
            problems.append(_pair(str(exc)))
            detail[role] = {"spec": spec.describe(), "name": None}
            continue
        resolved[role] = name
        try:
            iface = inspect_interface(name)
        except InterfaceError as exc:
            problems.append(_pair(str(exc)))
            detail[role] = {"spec": spec.describe(), "name": name}
            continue
        detail[role] = {"spec": spec.describe(), "name": name, "admin_up": iface.admin_up, "carrier": iface.carrier,
                        "operstate": iface.operstate, "addresses": [str(a) for a in iface.addresses]}
        if not iface.admin_up:
            problems.append((f"{words[0]} {name} 未启用", f"{words[1]} {name} is administratively down"))
        elif not iface.carrier:
            problems.append((f"{words[0]} {name} 无载波（网线未接？）", f"{words[1]} {name}: no carrier (cable "
                                                                    "unplugged?)"))
    if len(resolved) == 2 and resolved["cafe_port"] == resolved["officer_link"]:
        problems.append((f"网吧端口与检查设备链路是同一个接口 {resolved['cafe_port']}",
                         f"the café port and the officer link are the same interface {resolved['cafe_port']}"))
    fine = (f"网吧端口 {resolved.get('cafe_port')}、检查设备链路 {resolved.get('officer_link')} 均有载波",
            f"café port {resolved.get('cafe_port')} and officer link {resolved.get('officer_link')} have carrier")
    return _item("interfaces", problems, fine, detail)


# -- clock -----------------------------------------------------------------------------------------------------

def _clock_item(check: ClockCheck) -> SelfTestItem:
    return SelfTestItem("clock", check.ok, check.reason, check.model_dump(mode="json"))


# -- keys ------------------------------------------------------------------------------------------------------

def _owner(uid: int, gid: int | None = None) -> str:
    """``user`` (or ``user:group``) by name, the number where the name is unknown."""
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    if gid is None:
        return user
    try:
        return f"{user}:{grp.getgrgid(gid).gr_name}"
    except KeyError:
        return f"{user}:{gid}"


def check_keys(home: ProbeHome) -> SelfTestItem:
    """probe.key present, 0600, owned by the user running the probe, and loading; probe.json and probe.pub
    agreeing with it; a department key pinned; the inspector device pinned."""
    problems: list[tuple[str, str]] = []
    detail: dict[str, Any] = {"home": str(home.root)}
    path = home.private_key_path
    try:
        st = path.stat()
    except FileNotFoundError:
        problems.append((f"缺少私钥 {path}，请运行 cafe-probe keygen", f"no probe key {path}; run 'cafe-probe keygen'"))
        st = None
    except OSError as exc:
        problems.append((f"无法读取私钥 {path}", f"cannot read the probe key {path}: {exc.strerror}"))
        st = None
    if st is not None:
        mode = stat.S_IMODE(st.st_mode)
        detail.update(key_mode=f"{mode:04o}", key_owner=_owner(st.st_uid))
        if mode & 0o077:
            problems.append((f"私钥 {path} 权限为 {mode:04o}，应为 0600（chmod 600 {path}）",
                             f"probe key {path} is mode {mode:04o}, must be 0600 (chmod 600 {path})"))
        if st.st_uid != os.geteuid():
            problems.append((f"私钥属于 {_owner(st.st_uid)}，不是运行探针的用户 {_owner(os.geteuid())}",
                             f"probe key owned by {_owner(st.st_uid)}, not by the user running the probe "
                             f"({_owner(os.geteuid())})"))
        if not mode & 0o077:  # load_private_key would only repeat the mode problem
            try:
                ident = home.identity()
            except HomeError as exc:
                problems.append(_pair(str(exc)))
            else:
                detail.update(probe_id=ident.probe_id, key_id=ident.key_id)
                problems += _identity_consistency(home, ident.key_id)
    try:
        departments = home.departments()
    except HomeError as exc:
        problems.append(_pair(str(exc)))
        departments = {}
    else:
        if not departments:
            problems.append(("未登记部门公钥，请运行 cafe-probe pin-department",
                             "no department key pinned; run 'cafe-probe pin-department'"))
    detail["departments"] = sorted(departments)
    try:
        agent = home.agent()
    except HomeError as exc:
        problems.append(("未设置检查设备或记录无效，请运行 cafe-probe pin-agent 或暂存任务包",
                         f"inspector device not pinned or its record is invalid: {_pair(str(exc))[1]}"))
    else:
        detail["agent"] = {"url": agent.url, "key_id": agent.key_id}
    fine = (f"私钥 0600、身份一致、已登记 {len(departments)} 个部门公钥、已固定检查设备",
            f"probe key 0600, identity consistent, {len(departments)} department key(s) pinned, inspector device "
            "pinned")
    return _item("keys", problems, fine, detail)


def _identity_consistency(home: ProbeHome, actual_key_id: str) -> list[tuple[str, str]]:
    """probe.json's recorded key id and probe.pub must be the private key's own."""
    problems: list[tuple[str, str]] = []
    try:
        recorded = json.loads(home.identity_path.read_text(encoding="utf-8")).get("key_id")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded != actual_key_id:
        problems.append((f"{home.identity_path.name} 中的密钥编号与私钥不符", f"{home.identity_path.name} records key id "
                         f"{str(recorded)[:12]}…, the private key's is {actual_key_id[:12]}…"))
    try:
        public = key_id(load_public_key(home.public_key_path))
    except KeyFileError as exc:
        problems.append((f"公钥文件 {home.public_key_path.name} 无效", _pair(str(exc))[1]))
    else:
        if public != actual_key_id:
            problems.append((f"公钥文件 {home.public_key_path.name} 与私钥不成对",
                             f"{home.public_key_path.name} is not the private key's public half"))
    return problems


# -- packs and ruleset -----------------------------------------------------------------------------------------

def _when(moment: datetime | None, tz: str) -> str:
    return moment.astimezone(ZoneInfo(tz)).isoformat(timespec="seconds") if moment else "-"


def check_packs(entries: list[StagedEntry], tz: str = DEFAULT_TZ) -> SelfTestItem:
    """At least one pack valid now or yet to be, and none refused; expired ones are listed, not failed."""
    detail = {"packs": [{"pack_id": e.pack_id, "task": e.task_id, "venues": list(e.venues), "status": e.status,
                         "not_before": _when(e.not_before, tz), "not_after": _when(e.not_after, tz),
                         "reason": e.reason} for e in entries]}
    if not entries:
        return SelfTestItem("packs", False, "未暂存任务包，无人值守时无法检查，请运行 cafe-probe stage / no task pack "
                            "staged: a headless probe has nothing to run; run 'cafe-probe stage PACK'", detail)
    problems = [(f"任务包 {e.pack_id} 被拒绝：{_pair(e.reason)[0]}", f"pack {e.pack_id} refused: {_pair(e.reason)[1]}")
                for e in entries if e.status == "refused"]
    usable = [e for e in entries if e.status in ("valid", "not_yet")]
    expired = [e for e in entries if e.status == "expired"]
    if not usable:
        problems += [(f"任务包 {e.pack_id} 已于 {_when(e.not_after, tz)} 过期",
                      f"pack {e.pack_id} expired at {_when(e.not_after, tz)}") for e in expired]
        problems.append(("没有有效的任务包", "no valid task pack"))
    valid = sum(e.status == "valid" for e in usable)
    fine_zh, fine_en = [f"{valid} 个有效"], [f"{valid} valid"]
    for e in usable:
        if e.status == "not_yet":
            fine_zh.append(f"{e.pack_id} 自 {_when(e.not_before, tz)} 起生效")
            fine_en.append(f"{e.pack_id} valid from {_when(e.not_before, tz)}")
    if expired:
        fine_zh.append(f"{len(expired)} 个已过期，可移除")
        fine_en.append(f"{len(expired)} expired, may be removed")
    return _item("packs", problems, ("、".join(fine_zh), ", ".join(fine_en)), detail)


def _claimed_ruleset(path: Path) -> tuple[str, str] | None:
    """The (version, sha256) a staged envelope's payload names, read without trusting it (for the comparison
    only: whether the pack itself verifies is the packs item's business)."""
    try:
        _, payload, _ = parse_envelope(path.read_bytes())
        claimed = PackPayload.model_validate_json(payload)
    except (OSError, EnvelopeError, ValueError):
        return None
    return claimed.ruleset.version, claimed.ruleset.sha256


def check_ruleset(entries: list[StagedEntry]) -> SelfTestItem:
    """The ruleset loads, and every staged pack not expired expects exactly it (version and SHA-256)."""
    try:
        rules = load_ruleset()
    except RulesError as exc:
        return SelfTestItem("ruleset", False, f"规则库无效 / ruleset invalid: {'; '.join(exc.problems[:3])}", {})
    detail: dict[str, Any] = {"version": rules.version, "sha256": rules.sha256, "root": str(rules.root), "packs": {}}
    problems: list[tuple[str, str]] = []
    for entry in entries:
        if entry.status == "expired":
            continue
        claimed = _claimed_ruleset(entry.path)
        if claimed is None:
            continue  # not a readable pack at all: the packs item says so
        detail["packs"][entry.pack_id] = {"version": claimed[0], "sha256": claimed[1]}
        if claimed != (rules.version, rules.sha256):
            problems.append((f"任务包 {entry.pack_id} 要求规则库 {claimed[0]} sha256 {claimed[1][:12]}…，本探针为 "
                             f"{rules.version} {rules.sha256[:12]}…",
                             f"pack {entry.pack_id} expects ruleset {claimed[0]} sha256 {claimed[1][:12]}…, this "
                             f"probe has {rules.version} {rules.sha256[:12]}…"))
    fine = ((f"规则库 {rules.version}，与暂存任务包一致", f"ruleset {rules.version}, as the staged packs expect")
            if detail["packs"] else
            (f"规则库 {rules.version} 可读取（无暂存任务包可比对）", f"ruleset {rules.version} loads (no staged pack "
                                                                  "to compare with)"))
    item = _item("ruleset", problems, fine, detail)
    return SelfTestItem(item.key, item.ok, f"{item.reason} · sha256 {rules.sha256}", detail)


# -- outbox and disk -------------------------------------------------------------------------------------------

def check_outbox(home: ProbeHome) -> SelfTestItem:
    """The outbox takes a file durably (create, fsync, remove in ``pending/``) and has room for another report."""
    root = home.outbox_path
    detail: dict[str, Any] = {"path": str(root)}
    if not home.root.is_dir():  # a self-test does not make a probe home where there is none
        return SelfTestItem("outbox", False, f"探针目录不存在 / no probe home at {home.root}", detail)
    try:
        box = Outbox(root)
    except OSError as exc:
        return SelfTestItem("outbox", False, f"发件箱无法创建或打开 / cannot create or open the outbox {root}: "
                            f"{exc.strerror or exc}", detail)
    # The ".…tmp" name is one Outbox removes as a stale temporary, should we die between create and remove.
    probe = box.pending_dir / f".selftest-{os.getpid()}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"cafe-probe selftest\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
        fsync_dir(box.pending_dir)
    except OSError as exc:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass  # the directory refused the file in the first place
        return SelfTestItem("outbox", False, f"发件箱不可写 / the outbox is not writable: {box.pending_dir}: "
                            f"{exc.strerror or exc}", detail)
    pending = len(box.pending())
    free = shutil.disk_usage(root).free
    detail.update(pending=pending, max_pending=box.max_pending, free_bytes=free, min_free_bytes=box.min_free_bytes)
    try:
        box.check_room()
    except OutboxFull as exc:
        return SelfTestItem("outbox", False, str(exc), detail)
    return SelfTestItem("outbox", True, f"可写；待发送 {pending}/{box.max_pending}，剩余 {free // MIB} MiB / writable; "
                        f"{pending}/{box.max_pending} unsent, {free // MIB} MiB free", detail)


def check_disk(home: ProbeHome, min_free_bytes: int) -> SelfTestItem:
    """Free bytes on the home's filesystem at least the profile's minimum."""
    where = home.root.absolute()
    while not where.exists() and where != where.parent:  # the filesystem the home will be made on
        where = where.parent
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        return SelfTestItem("disk", False, f"无法读取磁盘空间 / cannot read the free space of {where}: "
                            f"{exc.strerror or exc}", {})
    detail = {"path": str(where), "free_bytes": usage.free, "total_bytes": usage.total,
              "min_free_bytes": min_free_bytes}
    free, need = usage.free // MIB, min_free_bytes // MIB
    if usage.free < min_free_bytes:
        return SelfTestItem("disk", False, f"磁盘空间不足：剩余 {free} MiB，至少需要 {need} MiB / not enough free disk: "
                            f"{free} MiB free, {need} MiB needed", detail)
    return SelfTestItem("disk", True, f"剩余 {free} MiB（至少 {need} MiB）/ {free} MiB free ({need} MiB needed)",
                        detail)


# -- raw socket ------------------------------------------------------------------------------------------------

def check_raw_socket() -> SelfTestItem:
    """Open an AF_PACKET raw socket and close it: never bound, nothing sent or received (protocol 0)."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        return SelfTestItem("raw_socket", False, "需要 CAP_NET_RAW：无法打开原始套接字，请以探针服务运行或授予此用户 / "
                            "needs CAP_NET_RAW: raw sockets refused; run as the probe's service (which has it) or "
                            "grant it to this user", {"euid": os.geteuid()})
    except OSError as exc:
        return SelfTestItem("raw_socket", False, f"无法打开原始套接字 / cannot open a raw socket: {exc.strerror or exc}",
                            {"euid": os.geteuid()})
    sock.close()
    return SelfTestItem("raw_socket", True, "可以打开原始套接字（CAP_NET_RAW）/ raw sockets allowed (CAP_NET_RAW)",
                        {"euid": os.geteuid()})


# -- LEDs ------------------------------------------------------------------------------------------------------

def _may_write(st: os.stat_result) -> bool:
    """Whether the mode bits let this process write: as owner, through a group it is in, or as anyone."""
    if os.geteuid() == 0:
        return True
    if st.st_uid == os.geteuid():
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def check_leds(hardware: HardwareProfile) -> SelfTestItem:
    """Each LED of the profile present, with a ``brightness`` this process may write (checked, not written)."""
    leds = hardware.leds
    if not leds:
        return SelfTestItem("leds", True, "此硬件档案不用指示灯（只写日志）/ this hardware profile has no LED (log only)",
                            {"leds": {}})
    problems: list[tuple[str, str]] = []
    detail: dict[str, Any] = {"leds": {}}
    for role, path in leds.items():
        brightness = path / "brightness"
        detail["leds"][role] = {"path": str(path)}
        if not path.is_dir():
            problems.append((f"指示灯 {role} 不存在：{path}", f"LED {role} not present: {path}"))
            continue
        try:
            st = brightness.stat()
        except OSError as exc:
            problems.append((f"指示灯 {role} 没有 brightness：{brightness}",
                             f"LED {role} has no brightness file {brightness}: {exc.strerror}"))
            continue
        owner = f"{_owner(st.st_uid, st.st_gid)} {stat.S_IMODE(st.st_mode):04o}"
        detail["leds"][role]["brightness"] = owner
        # os.access asks the kernel (it also sees a read-only mount); the mode bits say why not.
        if not (stat.S_ISREG(st.st_mode) and _may_write(st)
                and os.access(brightness, os.W_OK, effective_ids=os.access in os.supports_effective_ids)):
            problems.append((f"指示灯 {role} 不可写（{brightness} 为 {owner}），请安装 udev 规则",
                             f"LED {role} not writable by this user ({brightness} is {owner}); install the udev "
                             "rule"))
    names = ", ".join(f"{role}={path.name}" for role, path in leds.items())
    return _item("leds", problems, (f"指示灯可写：{names}", f"LEDs writable: {names}"), detail)


# -- all -------------------------------------------------------------------------------------------------------

def run_selftest(home: ProbeHome, hardware: HardwareProfile, *, now: Callable[[], float] = time.time,
                 clock: Callable[..., ClockCheck] = check_clock, agent_url: str | None = None,
                 tz: str = DEFAULT_TZ) -> list[SelfTestItem]:
    """Every item, in the order of :data:`ITEM_LABELS`.

    ``now`` is the probe's wall clock (packs are judged at it, and the clock
    check measures it); ``clock(device_url, tolerance, now=now)`` is the
    clock check; ``agent_url`` replaces the pinned inspector device's address.
    """
    moment = datetime.fromtimestamp(now(), ZoneInfo(tz))
    if agent_url is None:
        try:
            agent_url = home.agent().url
        except HomeError:
            agent_url = None
    entries = Staging(home).entries(moment)
    return [
        check_interfaces(hardware),
        _clock_item(clock(agent_url, hardware.clock_tolerance, now=now)),
        check_keys(home),
        check_packs(entries, tz),
        check_ruleset(entries),
        check_outbox(home),
        check_disk(home, hardware.min_free_bytes),
        check_raw_socket(),
        check_leds(hardware),
    ]
