"""Status-LED benchmark: how precisely the blink thread keeps each pattern's steps, and how soon a switch shows.

Run from the repository root with the project's virtualenv python:

    python bench/led.py [--runs 3] [--seconds 4.2] [--switches 20]

No real LED is touched: each pattern gets a fake LED class tree of its own
(``tests.ledkit``: status ACT at 255, alert PWR at 1) in a temporary folder,
all six blinking at once as in tests/test_led.py, and the brightness files are
sampled every ~2 ms for ``--seconds`` per run. For each blinking LED it prints
the worst deviation of a complete lit or dark run from the nearest step of
the program with the same level (median and worst over the runs), against the
design aim of 40 ms + 10 % of the step (a userspace blink, a few scheduler
ticks), and the flashes seen against the program's. Then ``--switches`` times
it switches one board from ``working`` to ``done_failures`` and times how long
the alert LED takes to read lit (polled every ~0.5 ms): the median and the
worst, against the aim of 50 ms.

These figures depend on the machine and its load; the tests check only the
patterns' shape and schedule.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hardware.led import PATTERN_NAMES, Program, StatusLed, load_patterns  # noqa: E402
from tests.ledkit import level, make_led, runs, sample  # noqa: E402

AIM_SWITCH_MS = 50.0
ROLES = (("status", 255), ("alert", 1))


def worst_deviation(samples: list[tuple[float, int]], program: Program) -> tuple[float, bool, int]:
    """(worst |run - nearest same-level step| in seconds, whether every run met 40 ms + 10 %, flashes seen)."""
    worst, met = 0.0, True
    seen = runs(samples)
    for lit, seconds in seen:
        steps = [s for s_lit, s in program.steps if s_lit == lit]
        off, step = min((abs(seconds - s), s) for s in steps)
        worst = max(worst, off)
        met = met and off <= 0.04 + 0.1 * step
    return worst, met, sum(1 for lit, _ in seen if lit)


def blink_run(root: Path, patterns: dict, seconds: float) -> dict[tuple[str, str], tuple[float, bool, int]]:
    """All six patterns at once on boards under ``root``; per blinking (pattern, role) its deviation figures."""
    boards = {name: {role: make_led(root / name, "ACT" if role == "status" else "PWR", on) for role, on in ROLES}
              for name in PATTERN_NAMES}
    shown = {name: StatusLed(leds, patterns=patterns) for name, leds in boards.items()}
    try:
        for name, led in shown.items():
            led.set(name)
        samples = sample({(name, role): path for name, leds in boards.items() for role, path in leds.items()},
                         seconds)
    finally:
        for led in shown.values():
            led.close()
    out = {}
    for name in PATTERN_NAMES:
        for role, _ in ROLES:
            program = patterns[name].programs[role]
            if program is not None and not program.steady:
                out[(name, role)] = worst_deviation(samples[(name, role)], program)
    return out


def switch_latencies(root: Path, patterns: dict, count: int) -> list[float]:
    """Seconds from ``set("done_failures")`` until the alert LED reads lit, ``count`` times."""
    status, alert = make_led(root, "ACT"), make_led(root, "PWR")
    led = StatusLed({"status": status, "alert": alert}, patterns=patterns)
    rng = random.Random(20261124)
    out = []
    try:
        for _ in range(count):
            led.set("working")
            while level(alert) != 0:
                time.sleep(0.0005)
            time.sleep(rng.uniform(0.05, 0.3))  # anywhere in the working blink
            start = time.perf_counter()
            led.set("done_failures")
            while level(alert) != 255:
                time.sleep(0.0005)
            out.append(time.perf_counter() - start)
    finally:
        led.close()
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="sampling windows (default 3)")
    p.add_argument("--seconds", type=float, default=4.2,
                   help="length of one window (default 4.2: two periods of the slowest pattern)")
    p.add_argument("--switches", type=int, default=20, help="timed switches to done_failures (default 20)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.seconds < 1 or args.switches < 1:
        p.error("--runs and --switches must be at least 1, --seconds at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    patterns = load_patterns()
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-led-") as tmp:
        for n in range(args.runs):
            results.append(blink_run(Path(tmp) / f"run{n}", patterns, args.seconds))
        latencies = switch_latencies(Path(tmp) / "switch", patterns, args.switches)

    print(f"{args.runs} windows of {args.seconds:g} s, six patterns at once; worst deviation of a run from its step")
    print(f"{'pattern.led':22} {'median ms':>9} {'worst ms':>9} {'flashes seen / program':>23} "
          f"{'40 ms + 10 %':>13}")
    for key in results[0]:
        worst = [r[key][0] * 1000 for r in results]
        flashes = "/".join(str(r[key][2]) for r in results)
        program = patterns[key[0]].programs[key[1]]
        expected = args.seconds / program.period * sum(1 for lit, _ in program.steps if lit)
        met = "met" if all(r[key][1] for r in results) else "MISSED"
        print(f"{key[0] + '.' + key[1]:22} {statistics.median(worst):9.1f} {max(worst):9.1f} "
              f"{flashes + f' / {expected:.1f}':>23} {met:>13}")
    ms = [s * 1000 for s in latencies]
    verdict = "met" if max(ms) < AIM_SWITCH_MS else "MISSED"
    print(f"switch to done_failures, alert LED lit after: median {statistics.median(ms):.1f} ms, "
          f"worst {max(ms):.1f} ms over {len(ms)} switches (aim < {AIM_SWITCH_MS:.0f} ms: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
