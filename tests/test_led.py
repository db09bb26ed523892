"""The status LED on a fake LED class tree (``<root>/<name>/{brightness,max_brightness,trigger}``): each
program's schedule, each pattern's shape sampled from the brightness files, switching, close(), a missing
LED, and an LED the service user may not write (a real permission refusal, then the udev rule's chgrp/chmod
g+w). How precisely a blink keeps its steps, and how soon a switch shows, is measured by bench/led.py."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from hardware.led import PATTERN_NAMES, LedPatternError, Program, StatusLed, load_patterns
from tests.ledkit import level, make_led, runs, sample

REPO = Path(__file__).resolve().parents[1]
PATTERNS = load_patterns()


def wait_until(condition, what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; the timeout only catches a write that never comes."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.002)


def check_program(samples: list[tuple[float, int]], program: Program, on: int, window: float, what: str) -> None:
    """What the blink thread wrote is the program's shape, checked without relying on this machine's timing.

    How closely runs keep their step lengths is bench/led.py's figure: a busy
    machine wakes the thread late, which stretches or shortens runs but
    cannot add levels, changes or flashes the program does not have.
    """
    values = {v for _, v in samples}
    assert values <= {0, on}, (what, values)  # lit means max_brightness, dark 0, nothing in between
    levels = [v > 0 for _, v in samples]
    changes = sum(1 for lit, before in zip(levels[1:], levels) if lit != before)
    if program.steady:
        # Taken over dark: a steady program changes the LED at most once, to its level, and for good.
        assert levels and levels[-1] == program.steps[0][0] and changes <= 1, (what, changes, levels[-1:])
        return
    flashes = sum(1 for lit, _ in runs(samples) if lit)
    expected_flashes = window / program.period * sum(1 for lit, _ in program.steps if lit)
    # At least one whole flash in two periods: it blinks. Never more than the program has in the window.
    assert 1 <= flashes <= expected_flashes + 1, (what, flashes, expected_flashes)


def test_pattern_file_has_six_patterns_each_distinct_on_the_status_led_alone(tmp_path: Path) -> None:
    assert tuple(PATTERNS) == PATTERN_NAMES
    status_programs = [PATTERNS[name].programs["status"] for name in PATTERN_NAMES]
    assert all(p is not None for p in status_programs)
    assert len({p.steps for p in status_programs if p is not None}) == len(PATTERN_NAMES)
    for name, pattern in PATTERNS.items():
        assert pattern.zh and pattern.en, name
    assert PATTERNS["delivered"].programs["alert"] is None  # keep: delivered-with-failures stays visible
    assert PATTERNS["done_failures"].programs["alert"] == Program(((True, 0.0),))

    bad = {
        "missing.yaml": "waiting: {zh: a, en: b, status: lit, alert: dark}\n",
        "bare_on.yaml": (REPO / "hardware/led_patterns.yaml").read_text().replace("status: lit", "status: on"),
        "too_fast.yaml": (REPO / "hardware/led_patterns.yaml").read_text().replace("lit 0.125", "lit 0.01"),
    }
    for file, text in bad.items():
        (tmp_path / file).write_text(text)
        with pytest.raises(LedPatternError):
            load_patterns(tmp_path / file)


def test_each_program_repeats_its_steps_from_the_moment_it_is_set() -> None:
    # The schedule the blink thread follows, checked without a clock: mid-step, every step of every period.
    for name, pattern in PATTERNS.items():
        for role, program in pattern.programs.items():
            if program is None or program.steady:
                continue
            at = 0.0
            for _ in range(3):
                for lit, seconds in program.steps:
                    got_lit, left = program.level_at(at + seconds / 2)
                    assert got_lit == lit and left == pytest.approx(seconds / 2), (name, role, at)
                    at += seconds


def test_each_pattern_blinks_its_own_shape(tmp_path: Path) -> None:
    """All six at once, one fake board each, sampled over 4.2 s (two periods of the slowest pattern)."""
    boards = {}
    for name in PATTERN_NAMES:
        boards[name] = {"status": make_led(tmp_path / name, "ACT", 255), "alert": make_led(tmp_path / name, "PWR", 1)}
    for leds in boards.values():
        assert {level(led) for led in leds.values()} == {0}
    shown = {name: StatusLed(leds) for name, leds in boards.items()}
    try:
        for name, led in shown.items():
            assert (boards[name]["status"] / "trigger").read_text() == "none"  # taken over from mmc0 at once
            led.set(name)
        window = 4.2
        samples = sample({(name, role): path for name, leds in boards.items() for role, path in leds.items()}, window)
    finally:
        for led in shown.values():
            led.close()
    for name in PATTERN_NAMES:
        for role, on in (("status", 255), ("alert", 1)):
            program = PATTERNS[name].programs[role] or Program(((False, 0.0),))  # keep, first pattern: dark
            check_program(samples[(name, role)], program, on, window, f"{name}.{role}")


def test_switching_shows_the_new_pattern_and_keep_holds_the_alert(tmp_path: Path) -> None:
    status, alert = make_led(tmp_path, "ACT"), make_led(tmp_path, "PWR")
    changes: list[str] = []
    led = StatusLed({"status": status, "alert": alert}, on_change=changes.append)
    try:
        assert led.pattern is None
        led.set("working")
        time.sleep(0.3)
        led.set("done_failures")
        # How soon it lights is bench/led.py's figure (the switch latency).
        wait_until(lambda: level(alert) == 255, "the alert LED never lit")
        led.set("delivered")
        led.set("delivered")  # the same pattern again: no change, no restart
        wait_until(lambda: level(status) == 255, "the status LED never went steady")
        found = sample({"status": status, "alert": alert}, 0.6)
        assert {v for _, v in found["status"]} == {255}
        assert {v for _, v in found["alert"]} == {255}  # delivered keeps the failures' alert
        assert led.pattern == "delivered"
        led.set("done_ok")
        led.set("delivered")
        # After done_ok, delivered keeps the alert dark.
        wait_until(lambda: level(alert) == 0 and level(status) == 255, "the alert LED stayed lit")
        with pytest.raises(ValueError, match="unknown LED pattern 'blinky'"):
            led.set("blinky")
        assert changes == ["working", "done_failures", "delivered", "done_ok", "delivered"]
    finally:
        led.close()
    assert level(status) == 255 and level(alert) == 0  # close(): steady states stay


def test_close_leaves_a_blinking_led_dark_and_survives_concurrent_calls(tmp_path: Path) -> None:
    status = make_led(tmp_path, "ACT", 1)
    led = StatusLed({"status": status})
    names = list(PATTERN_NAMES)
    failures: list[BaseException] = []

    def hammer(offset: int) -> None:
        try:
            for i in range(300):
                led.set(names[(i + offset) % len(names)])
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    led.set("working")
    time.sleep(0.2)
    led.close()
    assert level(status) == 0
    time.sleep(0.3)
    assert level(status) == 0  # nothing writes after close
    led.close()  # twice is fine
    with pytest.raises(RuntimeError):
        led.set("waiting")


def test_missing_led_is_logged_once_and_the_other_still_works(tmp_path: Path, caplog) -> None:
    alert = make_led(tmp_path, "PWR")
    with caplog.at_level(logging.INFO, logger="cafe_probe.led"):
        led = StatusLed({"status": tmp_path / "ACT", "alert": alert})
        try:
            for name in ("waiting", "working", "error", "done_failures"):
                led.set(name)
            wait_until(lambda: level(alert) == 255, "the alert LED never lit")
        finally:
            led.close()
    missing = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(missing) == 1 and str(tmp_path / "ACT") in missing[0].getMessage()
    assert led.problems == [missing[0].getMessage()]
    assert not (tmp_path / "ACT").exists()  # nothing created in its place

    nothing = StatusLed({})  # a laptop without LEDs: patterns are only logged
    nothing.set("error")
    assert nothing.pattern == "error" and nothing.problems == []
    nothing.close()


# Runs as an unprivileged user (the service's situation): blink on LEDs it may or may not write.
_CHILD = """
import json, logging, sys, time
from pathlib import Path
from hardware.led import StatusLed
records = []
class Keep(logging.Handler):
    def emit(self, record): records.append((record.levelname, record.getMessage()))
logging.getLogger("cafe_probe.led").addHandler(Keep()); logging.getLogger("cafe_probe.led").setLevel(logging.INFO)
root = Path(sys.argv[1])
led = StatusLed({"status": root / "ACT", "alert": root / "PWR"})
for name in ("waiting", "working", "error", "delivered"):
    led.set(name)
    time.sleep(0.15)
led.close()
print(json.dumps({"problems": led.problems, "errors": [m for lvl, m in records if lvl == "ERROR"]}))
"""


def _as_nobody(root: Path) -> dict:
    if os.geteuid() == 0:
        argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
                sys.executable, "-c", _CHILD, str(root)]
    else:
        argv = [sys.executable, "-c", _CHILD, str(root)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_unwritable_brightness_is_one_clear_error_then_the_udev_grant_fixes_it() -> None:
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to drop to an unprivileged user")
    # Outside pytest's 0700 tmp dir, so the unprivileged user can reach it.
    root = Path(tempfile.mkdtemp(prefix="cafe-leds-"))
    try:
        os.chmod(root, 0o755)
        for name in ("ACT", "PWR"):
            led = make_led(root, name)
            os.chmod(led, 0o755)
            for f in led.iterdir():
                os.chmod(f, 0o644)  # as the kernel makes them: root's to write
        if os.geteuid() != 0:  # not root: this user owns the files, so take its write bit away
            for f in [*(root / "ACT").iterdir(), *(root / "PWR").iterdir()]:
                os.chmod(f, 0o444)
        refused = _as_nobody(root)
        assert len(refused["errors"]) == 2, refused  # once per LED, however many patterns followed
        for problem in refused["problems"]:
            assert "cannot write" in problem and "brightness" in problem and "udev rule" in problem
        assert level(root / "ACT") == 0 and level(root / "PWR") == 0

        if os.geteuid() == 0:
            # What the udev rule runs on add: chgrp <service group> + chmod g+w of brightness and trigger.
            for name in ("ACT", "PWR"):
                files = [str(root / name / "brightness"), str(root / name / "trigger")]
                subprocess.run(["chgrp", "nogroup", *files], check=True)
                subprocess.run(["chmod", "g+w", *files], check=True)
            granted = _as_nobody(root)
            assert granted == {"problems": [], "errors": []}
            assert level(root / "ACT") == 255 and (root / "ACT" / "trigger").read_text() == "none"
    finally:
        shutil.rmtree(root)


def test_led_command_shows_a_pattern_and_names_a_missing_led(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from probe.cli import app

    leds = tmp_path / "leds"
    status = make_led(leds, "ACT", 1)
    hardware = tmp_path / "hardware.yaml"
    hardware.write_text(f"profile: pi4\nleds_root: {leds}\n")
    done = CliRunner().invoke(app, ["led", "delivered", "--hardware", str(hardware), "--seconds", "0.5"])
    assert done.exit_code == 1, done.output  # PWR is missing from this board: said, and exit 1
    assert f"no such LED: {leds / 'PWR'}" in done.output and "delivered:" in done.output
    assert level(status) == 1 and (status / "trigger").read_text() == "none"  # delivered stays lit

    make_led(leds, "PWR", 1)
    done = CliRunner().invoke(app, ["led", "working", "--hardware", str(hardware), "--seconds", "0.5"])
    assert done.exit_code == 0, done.output
    assert level(status) == 0  # a blink ends dark
    wrong = CliRunner().invoke(app, ["led", "disco"])
    assert wrong.exit_code == 2 and "unknown pattern 'disco'" in wrong.output
