"""Fake LED class trees and a brightness sampler, for tests/test_led.py and bench/led.py."""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["level", "make_led", "runs", "sample"]


def make_led(root: Path, name: str, max_brightness: int = 255) -> Path:
    """``<root>/<name>/{brightness,max_brightness,trigger}`` as the kernel shows an idle LED (dark, mmc0)."""
    led = root / name
    led.mkdir(parents=True)
    (led / "brightness").write_text("0\n")
    (led / "max_brightness").write_text(f"{max_brightness}\n")
    (led / "trigger").write_text("none rc-feedback [mmc0] timer heartbeat\n")
    return led


def level(led: Path) -> int | None:
    """The LED's brightness now; None when read between the writer's truncate and its write."""
    text = (led / "brightness").read_text().strip()
    return int(text) if text else None


def sample(leds: dict, seconds: float) -> dict:
    """Every LED's brightness every ~2 ms for ``seconds``: {key: [(time since start, value)]}."""
    found: dict = {key: [] for key in leds}
    start = time.monotonic()
    while (now := time.monotonic() - start) < seconds:
        for key, led in leds.items():
            value = level(led)
            if value is not None:
                found[key].append((now, value))
        time.sleep(0.002)
    return found


def runs(samples: list[tuple[float, int]]) -> list[tuple[bool, float]]:
    """Complete runs of one level between two changes: [(lit, seconds)]; the first and last are cut off."""
    edges = [(t, v > 0) for (t, v), (_, before) in zip(samples[1:], samples) if (v > 0) != (before > 0)]
    return [(lit, t2 - t1) for (t1, lit), (t2, _) in zip(edges, edges[1:])]
