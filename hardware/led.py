"""The probe's status LED, through the Linux LED class (``/sys/class/leds/<name>/``).

``StatusLed({"status": path, "alert": path})`` takes the LEDs over (trigger ``none``, dark) and shows one
of the patterns of ``hardware/led_patterns.yaml`` at a time: ``.set("working")``.

Blinking is done here, by a thread writing ``brightness`` (0 or ``max_brightness``), not by the kernel's
``timer`` trigger: selecting that trigger creates ``delay_on`` / ``delay_off`` files at that moment, owned
by root, which no udev rule can open to the unprivileged service user beforehand. ``trigger`` is written
once (``none``) and ``brightness`` on each change; the udev rule grants the service's group exactly those
two files. (Writing 0 to ``brightness`` also clears any trigger, per the kernel's sysfs-class-led ABI, so
the LED still works where only ``brightness`` is writable.)

A missing LED, or one whose files cannot be written, is logged once and left alone: the LED is a help to
the officer, never a reason for a run to fail. ``problems`` lists what went wrong, for the self-test.

``close()`` stops the thread and leaves each LED in its last steady state (``delivered`` stays lit after
the service ends); an LED that was blinking is left dark, since a blink frozen half-way would mislead.
The LEDs stay ours until the next start or a reboot (the default trigger is not restored: ACT would then
flicker with SD-card activity and could be read as a pattern).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

__all__ = ["PATTERN_NAMES", "PATTERNS_FILE", "ROLES", "LedPatternError", "Pattern", "Program", "StatusLed",
           "load_patterns"]

log = logging.getLogger("cafe_probe.led")

PATTERNS_FILE = Path(__file__).with_name("led_patterns.yaml")
PATTERN_NAMES = ("waiting", "working", "done_ok", "done_failures", "delivered", "error")
ROLES = ("status", "alert")
# A userspace blink cannot be much finer than a few scheduler ticks; an eye cannot tell much finer either.
MIN_STEP = 0.05
MAX_PERIOD = 10.0
_STEP = re.compile(r"^(lit|dark)\s+([0-9]*\.?[0-9]+)$")


class LedPatternError(Exception):
    """The pattern file is malformed; the message names the pattern and the LED."""


@dataclass(frozen=True)
class Program:
    """What one LED does: ``steps`` of (lit, seconds) repeated; one step with 0 seconds is steady."""

    steps: tuple[tuple[bool, float], ...]

    @property
    def steady(self) -> bool:
        """A steady LED: lit or dark for good."""
        return len(self.steps) == 1

    @property
    def period(self) -> float:
        """Seconds of one repetition (0 when steady)."""
        return sum(seconds for _, seconds in self.steps)

    def level_at(self, elapsed: float) -> tuple[bool, float]:
        """(lit, seconds until it changes) at ``elapsed`` seconds after the program began."""
        if self.steady:
            return self.steps[0][0], MAX_PERIOD
        phase = elapsed % self.period
        for lit, seconds in self.steps:
            if phase < seconds:
                return lit, seconds - phase
            phase -= seconds
        return self.steps[0][0], self.steps[0][1]  # float rounding at the very end of a period


DARK = Program(((False, 0.0),))


@dataclass(frozen=True)
class Pattern:
    """One named pattern: words for the officer and a program per LED role (``None``: keep as it was)."""

    name: str
    zh: str
    en: str
    programs: dict[str, Program | None]


def _program(value: Any, where: str) -> Program | None:
    if value == "keep":
        return None
    if value in ("lit", "dark"):
        return Program(((value == "lit", 0.0),))
    if not isinstance(value, list) or len(value) < 2:
        raise LedPatternError(f"{where}: 须为 lit、dark、keep 或步骤列表 / must be lit, dark, keep or a list of "
                              f"two or more steps like 'lit 0.5', got {value!r}")
    steps = []
    for item in value:
        found = _STEP.match(item) if isinstance(item, str) else None
        if not found or float(found.group(2)) < MIN_STEP:
            raise LedPatternError(f"{where}: 步骤无效 / bad step {item!r} (lit|dark SECONDS, at least {MIN_STEP} s)")
        steps.append((found.group(1) == "lit", float(found.group(2))))
    program = Program(tuple(steps))
    if program.period > MAX_PERIOD or all(lit for lit, _ in steps) or not any(lit for lit, _ in steps):
        raise LedPatternError(f"{where}: 须既亮又灭且一周期不超过 {MAX_PERIOD} 秒 / a blink needs lit and dark "
                              f"steps and a period of at most {MAX_PERIOD} s")
    return program


def load_patterns(path: Path = PATTERNS_FILE) -> dict[str, Pattern]:
    """Read and check the pattern file: exactly the six patterns, each with words and both roles."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, yaml.YAMLError) as exc:
        raise LedPatternError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or set(data) != set(PATTERN_NAMES):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise LedPatternError(f"{path}: 须恰好定义 / must define exactly {', '.join(PATTERN_NAMES)}; got {got}")
    patterns = {}
    for name in PATTERN_NAMES:
        entry = data[name]
        if not isinstance(entry, dict) or set(entry) != {"zh", "en", *ROLES}:
            raise LedPatternError(f"{path}: {name}: 须有且仅有键 / needs exactly the keys zh, en, {', '.join(ROLES)}")
        patterns[name] = Pattern(name, str(entry["zh"]), str(entry["en"]),
                                 {role: _program(entry[role], f"{path.name}: {name}.{role}") for role in ROLES})
    return patterns


class _Led:
    """One LED class directory; writes only on change, gives up (once, logged) on the first failed write."""

    def __init__(self, role: str, path: Path) -> None:
        self.role, self.path = role, path
        self.lit: bool | None = None
        self.problem: str | None = None
        self.on_value = "1"
        if not (path / "brightness").exists():
            self._fail(f"没有指示灯 {path} / no such LED: {path}", warning=True)
            return
        try:
            top = int((path / "max_brightness").read_text().strip() or "1")
            self.on_value = str(top if top > 0 else 1)
        except (OSError, ValueError):
            pass  # an LED without max_brightness still lights at 1
        try:
            _write(path / "trigger", "none")
        except OSError as exc:
            # Not fatal: the first brightness write of 0 below clears the trigger as well.
            log.info("指示灯 %s 的 trigger 不可写 / cannot write the trigger of %s: %s", path.name, path,
                     exc.strerror or exc)
        self.show(False)

    @property
    def live(self) -> bool:
        return self.problem is None

    def show(self, lit: bool) -> None:
        if self.problem is not None or lit == self.lit:
            return
        try:
            _write(self.path / "brightness", self.on_value if lit else "0")
        except OSError as exc:
            self._fail(f"无法写入指示灯 {self.path}/brightness（已装 udev 规则并在 {self.path.name} 的属组中？）/ "
                       f"cannot write {self.path}/brightness: {exc.strerror or exc} (is the udev rule installed "
                       f"and the service user in its group?)", warning=False)
            return
        self.lit = lit

    def _fail(self, message: str, *, warning: bool) -> None:
        self.problem = message
        log.log(logging.WARNING if warning else logging.ERROR, "%s", message)


def _write(path: Path, text: str) -> None:
    # O_TRUNC as a shell's '>' does: harmless on sysfs, and a plain file (tests) holds only the new value.
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class StatusLed:
    """Shows one pattern at a time on the status (and alert) LED; safe to call from any thread.

    ``leds`` maps a role (``status`` / ``alert``) to an LED class directory, as
    :attr:`hardware.profiles.HardwareProfile.leds` gives it; an empty mapping only logs the patterns.
    ``on_change(pattern)`` is called after each change of pattern."""

    def __init__(self, leds: Mapping[str, Path], on_change: Callable[[str], None] | None = None, *,
                 patterns: Mapping[str, Pattern] | None = None) -> None:
        unknown = set(leds) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown LED role(s): {', '.join(sorted(unknown))} (known: {', '.join(ROLES)})")
        self._patterns = dict(patterns) if patterns is not None else load_patterns()
        self._on_change = on_change
        self._cond = threading.Condition()
        self._leds = {role: _Led(role, Path(path)) for role, path in leds.items()}
        now = time.monotonic()
        self._programs: dict[str, Program] = {role: DARK for role in ROLES}
        self._epochs: dict[str, float] = {role: now for role in ROLES}
        self._pattern: str | None = None
        self._version = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def pattern(self) -> str | None:
        """The pattern shown now (None before the first ``set``)."""
        with self._cond:
            return self._pattern

    @property
    def problems(self) -> list[str]:
        """One line per LED that is missing or could not be written."""
        return [led.problem for led in self._leds.values() if led.problem is not None]

    def set(self, pattern: str) -> None:
        """Show ``pattern`` from now on; setting the pattern already shown changes nothing."""
        if pattern not in self._patterns:
            raise ValueError(f"unknown LED pattern {pattern!r} (known: {', '.join(self._patterns)})")
        chosen = self._patterns[pattern]
        with self._cond:
            if self._closed:
                raise RuntimeError("StatusLed is closed")
            if pattern == self._pattern:
                return
            now = time.monotonic()
            for role, program in chosen.programs.items():
                if program is not None:  # None: keep the LED as the pattern before left it
                    self._programs[role], self._epochs[role] = program, now
            self._pattern = pattern
            self._version += 1
            if self._thread is None and any(led.live for led in self._leds.values()):
                self._thread = threading.Thread(target=self._run, name="status-led", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        log.info("指示灯 LED: %s · %s / %s", pattern, chosen.zh, chosen.en)
        if self._on_change is not None:
            self._on_change(pattern)

    def close(self) -> None:
        """Stop blinking: steady LEDs stay as they are, blinking ones go dark. Safe to call twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
        for role, led in self._leds.items():
            program = self._programs[role]
            led.show(program.steps[0][0] if program.steady else False)

    def __enter__(self) -> "StatusLed":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                version = self._version
                wanted: dict[str, bool] = {}
                wait = MAX_PERIOD
                for role in self._leds:
                    lit, remaining = self._programs[role].level_at(now - self._epochs[role])
                    wanted[role] = lit
                    wait = min(wait, remaining)
            for role, lit in wanted.items():  # sysfs writes outside the lock: set() never waits on them
                self._leds[role].show(lit)
            with self._cond:
                if self._closed:
                    return
                if self._version == version:
                    # A little past the edge, so the next pass lands in the next step, not on its border.
                    self._cond.wait(timeout=wait + 0.001)
