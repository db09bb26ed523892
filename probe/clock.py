"""The probe's clock: is the kernel's clock disciplined, and how far is it from the inspector device's?

A Raspberry Pi has no battery-backed clock: after a power cut it starts from
the last saved time until NTP (or anything else) corrects it. A report's times
are evidence, so the self-test and every run record the clock's state
(:class:`probe.observations.ClockCheck`). The reference is the inspector
device the officers carry (``GET /v1/time`` over the officer link): a probe
within tolerance of it is fine even with no NTP, since the officers' own
records use that clock; with no device in reach, only a synchronised kernel
clock is trusted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx

from probe.observations import ClockCheck
from probe.sender import device_client

__all__ = ["DEFAULT_TZ", "DeviceTimeError", "kernel_synchronised", "device_offset", "check_clock"]

DEFAULT_TZ = "Asia/Shanghai"

# adjtimex(2): the return value is the clock state; TIME_ERROR means the clock
# is not synchronised (the kernel returns it whenever STA_UNSYNC or
# STA_CLOCKERR is set). STA_UNSYNC is set at boot and by the kernel once
# maxerror passes 16 s without an NTP daemon refreshing it; chrony,
# systemd-timesyncd and ntpd clear it while they hold the clock.
TIME_ERROR = 5
STA_UNSYNC = 0x0040


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """``struct timex`` of <sys/timex.h> (glibc's ``adjtimex`` symbol: fields are C longs on every ABI).

    Only ``modes`` (in) and ``status`` (out) are used; both precede the
    timeval, so their offsets do not depend on the size of time_t. The
    trailing padding is the kernel's own (11 ints) plus room to spare, so a
    kernel writing a longer struct never writes past our buffer.
    """

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time", _Timeval), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
                ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
                ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
                ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int), ("_padding", ctypes.c_int * 32)]


def kernel_synchronised() -> bool | None:
    """Whether the kernel holds its clock as synchronised (adjtimex, read only); None when it cannot be read.

    ``modes`` is 0, so the call only reads: it never adjusts the clock and
    needs no privilege.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return None
    adjtimex.argtypes = [ctypes.POINTER(_Timex)]
    adjtimex.restype = ctypes.c_int
    tx = _Timex()  # zeroed: modes 0 = read only
    state = adjtimex(ctypes.byref(tx))
    if state < 0:
        return None
    return state != TIME_ERROR and not tx.status & STA_UNSYNC


class DeviceTimeError(Exception):
    """The inspector device's time could not be read; the message is one line (Chinese / English)."""


def _device_time(client: httpx.Client, url: str) -> float:
    answer = client.get(url)
    if answer.status_code != 200:
        raise DeviceTimeError(f"检查设备时间接口应答 {answer.status_code} / the device's /v1/time answered "
                              f"{answer.status_code}")
    try:
        unix = answer.json()["unix"]
    except (ValueError, KeyError, TypeError):
        raise DeviceTimeError("检查设备时间应答格式错误 / the device's time answer is malformed") from None
    if isinstance(unix, bool) or not isinstance(unix, (int, float)) or not math.isfinite(unix):
        raise DeviceTimeError("检查设备时间应答格式错误 / the device's time answer is malformed")
    return float(unix)


def device_offset(url: str, samples: int = 3, timeout: float = 2.0,
                  now: Callable[[], float] = time.time) -> tuple[float, float]:
    """The inspector device's clock minus ours, in seconds, and the round trip it was measured over.

    NTP-style: the device's reading is taken to be from the middle of the
    round trip; of ``samples`` readings the one with the smallest round trip
    wins (the least room for an asymmetric delay). The round trip is timed on
    the monotonic clock, so a step of the wall clock mid-request cannot fake a
    short one. ``now`` is our wall clock. Raises DeviceTimeError when no
    reading succeeds (a transport error ends the tries: the link is down).
    """
    target = url.rstrip("/") + "/v1/time"
    best: tuple[float, float] | None = None
    problem = ""
    with device_client(timeout) as client:
        for _ in range(max(1, samples)):
            start_wall, start = now(), time.monotonic()
            try:
                device = _device_time(client, target)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
                break
            except DeviceTimeError as exc:
                problem = str(exc)
                continue
            rtt = time.monotonic() - start
            offset = device - (start_wall + rtt / 2)
            if best is None or rtt < best[1]:
                best = (offset, rtt)
    if best is None:
        raise DeviceTimeError(f"无法读取检查设备时间 / cannot read the inspector device's time at {target} "
                              f"({problem})")
    return best


def check_clock(device_url: str | None, tolerance: float, *, now: Callable[[], float] = time.time,
                synchronised: Callable[[], bool | None] = kernel_synchronised, timeout: float = 2.0,
                tz: str = DEFAULT_TZ) -> ClockCheck:
    """The clock's verdict: off from the device by more than ``tolerance`` fails; within it passes (even
    with the kernel unsynchronised: the device is the reference the officers carry); with no device in
    reach only a kernel-synchronised clock passes."""
    checked_at = datetime.fromtimestamp(now(), ZoneInfo(tz))
    kernel = synchronised()
    offset = rtt = None
    unreachable = ""
    if device_url:
        try:
            offset, rtt = device_offset(device_url, timeout=timeout, now=now)
        except DeviceTimeError as exc:
            unreachable = str(exc)
    else:
        unreachable = "未设置检查设备 / no inspector device pinned"
    kernel_zh, kernel_en = {True: ("内核时钟已同步", "kernel clock synchronised"),
                            False: ("内核时钟未同步", "kernel clock not synchronised"),
                            None: ("无法读取内核时钟状态", "kernel clock state unreadable")}[kernel]
    if offset is not None:
        side_zh, side_en = ("探针慢", "probe behind") if offset >= 0 else ("探针快", "probe ahead")
        if abs(offset) > tolerance:
            ok = False
            reason = (f"时钟与检查设备相差 {offset:+.1f} s（{side_zh}），超过容差 {tolerance:g} s / clock off from the "
                      f"inspector device by {offset:+.1f} s ({side_en}; tolerance {tolerance:g} s)")
        else:
            ok = True
            reason = (f"与检查设备相差 {offset:+.1f} s，在容差 {tolerance:g} s 内（{kernel_zh}；以检查设备时钟为准）/ "
                      f"within {tolerance:g} s of the inspector device ({offset:+.1f} s; {kernel_en}; the device "
                      "the officers carry is the reference)")
    elif kernel:
        ok = True
        reason = (f"内核时钟已同步，未能与检查设备比对 / kernel clock synchronised; not compared with the inspector "
                  f"device — {unreachable}")
    else:
        ok = False
        reason = (f"时钟未同步且无法与检查设备比对（{kernel_zh}）/ clock not synchronised and the inspector device not "
                  f"reachable ({kernel_en}) — {unreachable}")
    return ClockCheck(checked_at=checked_at, synchronised=kernel, device_url=device_url, device_offset=offset,
                      device_rtt=rtt, tolerance=tolerance, ok=ok, reason=reason)
