"""The headless probe: wait for the café cable, find out which staged venue this is, inspect, deliver.

One plug-in cycle::

    waiting  ── carrier on the café port (netlink RTM_NEWLINK) ──▶ working
    working: identify the venue (probe.net.identify, probe.venue_match) on a raw link with its own pcap
             · none / ambiguous → error: the reason in identify.json and the journal; nothing else is sent
             · one match → the venue's profile and secrets into a private runtime directory, the probe's
               address claimed, the clock checked against the inspector device, the whole inspection run
               (probe.run), stopped between stages when the café link loses its carrier
    done_ok / done_failures / error (incomplete run, failed clock) ── report in the outbox
    delivered: once the officer link has carrier and the inspector device has signed a receipt for it

After a cycle the probe waits for the café cable to be pulled and plugged in
again: it never runs twice on one plug. Every step is one JSON line in
``home/autorun.log`` and on stdout (the systemd journal), with the time and its
UTC offset and the LED pattern shown at that moment.

Carrier comes from the kernel's link notifications (pyroute2, ``IPRoute.bind``
on the link group): no polling of ``ip`` and no wake-ups while nothing happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from probe.home import HomeError, ProbeHome
from probe.iface import LINK_LOST, CarrierWatch
from probe.observations import VenueIdentification
from probe.outbox import Outbox
from probe.report import REPORT_FILE, ReportError, verify_report
from probe.run import DEFAULT_TZ, Progress, RunOptions, RunRefused, execute, prepare
from probe.sender import SendResult, send_outbox

__all__ = ["JOURNAL_FILE", "Journal", "read_journal", "Deliverer", "AutorunConfig", "Autorun", "CycleResult",
           "end_pattern", "peak_rss_mb", "EXIT_OK", "EXIT_NOT_DELIVERED", "EXIT_NOT_RUN", "EXIT_NO_CARRIER"]

JOURNAL_FILE = "autorun.log"
RUNS_DIR = "runs"
# Exit codes of ``--once`` (the loop itself only ends on SIGTERM, with EXIT_OK).
EXIT_OK = 0              # the run's report was delivered (or the loop was stopped)
EXIT_NOT_RUN = 4         # no venue identified, or the run refused to start: nothing was sent past the LAN
EXIT_NOT_DELIVERED = 3   # the report is in the outbox, not yet on the inspector device
EXIT_NO_CARRIER = 5      # --wait-timeout passed without the café cable being plugged in
STOP_ASKED = "收到停止信号 / stop requested (SIGTERM)"
OFF = "off"
CLOCK_TIMEOUT = 2.0      # seconds per request of the clock check over the officer link
SEND_ATTEMPTS = 3        # per report and delivery round; the round is repeated with backoff while it stays pending
SEND_TIMEOUT = 5.0
MAX_BACKOFF = 60.0


# --------------------------------------------------------------------------------------------------- journal

class Journal:
    """JSON lines, one per event, appended to a file and echoed to ``echo`` (stdout: the systemd journal).

    Each line: ``at`` (ISO 8601 with the UTC offset), ``event``, ``detail``
    (plain data; never a secret), ``led`` (the pattern shown then). Lines are
    flushed as written so a power cut loses at most the line being written.
    """

    def __init__(self, path: Path, tz: ZoneInfo, echo: TextIO | None = sys.stdout) -> None:
        self.path = path
        self.tz = tz
        self.echo = echo
        self.led = OFF
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, event: str, detail: dict[str, Any] | None = None, led: str | None = None) -> dict[str, Any]:
        """Append one line; ``led`` records a new LED pattern (else the current one is repeated)."""
        with self._lock:
            if led is not None:
                self.led = led
            line = {"at": datetime.now(self.tz).isoformat(timespec="milliseconds"), "event": event,
                    "detail": detail or {}, "led": self.led}
            text = json.dumps(line, ensure_ascii=False, default=str)
            self._file.write(text + "\n")
            self._file.flush()
            if self.echo is not None:
                self.echo.write(text + "\n")
                self.echo.flush()
        return line

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The journal's lines as data (a torn last line, from a power cut, is left out)."""
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            continue
    return lines


# -------------------------------------------------------------------------------------------------- delivery

class Deliverer:
    """Sends the outbox to the pinned inspector device whenever the officer link has carrier.

    Kicked after each run (and once at start for what an earlier power cut
    left). While reports stay pending it tries again with a growing pause;
    while the officer link has no carrier it waits for the kernel's
    notification instead of trying. ``on_sent(report_id)`` is called for every
    report acknowledged with a verified receipt.
    """

    def __init__(self, home: ProbeHome, officer: CarrierWatch | None, journal: Journal,
                 on_sent: Callable[[str], None], stopping: threading.Event) -> None:
        self.home = home
        self.officer = officer
        self.journal = journal
        self.on_sent = on_sent
        self.stopping = stopping
        self._kick = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="deliver", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Deliver what is pending now (or as soon as the officer link has carrier)."""
        self._kick.set()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            if not self._kick.wait(0.5):
                continue
            self._kick.clear()
            self._deliver_all()

    def _deliver_all(self) -> None:
        outbox = Outbox(self.home.outbox_path)
        pause = 2.0
        while not self.stopping.is_set() and (outbox.pending() or outbox.unfinished_moves()):
            if self.officer is not None and not self.officer.carrier:
                self.journal.write("officer_link_wait", {"iface": self.officer.iface,
                                                         "pending": len(outbox.pending())})
                if not self.officer.wait(True, cancel=self.stopping):
                    return
                self.journal.write("officer_link_up", {"iface": self.officer.iface})
            try:
                agent = self.home.agent()
            except HomeError as exc:
                self.journal.write("deliver_refused", {"reason": str(exc)})
                return
            send_outbox(outbox, agent, attempts=SEND_ATTEMPTS, timeout=SEND_TIMEOUT, on_result=self._result)
            if not outbox.pending() or self.stopping.wait(pause):
                return
            pause = min(MAX_BACKOFF, pause * 2)

    def _result(self, result: SendResult) -> None:
        self.journal.write("delivery", {"report_id": result.report_id, "outcome": result.outcome,
                                        "detail": result.detail, "record": result.record})
        if result.outcome in ("sent", "recovered"):
            self.on_sent(result.report_id)

    def close(self) -> None:
        self._thread.join(timeout=SEND_ATTEMPTS * SEND_TIMEOUT + 5)


# ---------------------------------------------------------------------------------------------------- the run

def end_pattern(complete: bool, clock_ok: bool | None, failures: int) -> str:
    """The LED pattern a finished run leaves: error (incomplete, or the clock failed), else done_*."""
    if not complete or clock_ok is False:
        return "error"
    return "done_failures" if failures else "done_ok"


@dataclass
class CycleResult:
    """What one plug-in cycle came to (also the ``--once`` exit code)."""

    outcome: str  # "report" | "none" | "ambiguous" | "refused" | "link_lost" | "stopped" | "failed"
    run_dir: Path | None = None
    report_id: str | None = None
    complete: bool = True
    pattern: str = "error"
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class AutorunConfig:
    """Where the autorun finds everything."""

    home: ProbeHome
    cafe_port: str
    officer_link: str | None
    leds: dict[str, Path]
    clock_tolerance: float
    hardware_name: str = ""
    once: bool = False
    wait_timeout: float | None = None
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TZ))
    identify_window: float = 5.0
    echo: TextIO | None = sys.stdout


class Autorun:
    """The loop; :meth:`run` returns the exit code. :meth:`request_stop` (SIGTERM) ends it cleanly."""

    def __init__(self, config: AutorunConfig) -> None:
        from hardware.led import Pattern, Program, StatusLed, load_patterns  # only the headless probe needs them

        self.config = config
        self.home = config.home
        self.stopping = threading.Event()
        self.signalled = False
        self.journal = Journal(self.home.root / JOURNAL_FILE, config.tz, config.echo)
        # One more pattern than the officer's six: all dark, for a service stopped from outside.
        dark = Program(((False, 0.0),))
        off = Pattern(OFF, "熄灭：探针服务已停止", "off: the probe service stopped", {"status": dark, "alert": dark})
        self.led = StatusLed(config.leds, patterns={**load_patterns(), OFF: off})
        self._led_lock = threading.Lock()
        self._current_report: str | None = None
        self._delivered_event = threading.Event()

    # -- LED and journal ------------------------------------------------------------------------------------
    def show(self, pattern: str, event: str, detail: dict[str, Any] | None = None) -> None:
        """Set the LED pattern and journal the event with it."""
        with self._led_lock:
            self.led.set(pattern)
            self.journal.write(event, detail, led=pattern)

    def request_stop(self) -> None:
        """Ask the loop to stop (SIGTERM): the current run ends as incomplete at its next stage boundary,
        the LEDs go dark."""
        self.signalled = True
        self.stopping.set()

    def _on_sent(self, report_id: str) -> None:
        with self._led_lock:
            if report_id == self._current_report:
                # Only this run's report turns the LED to delivered; an older one going out changes nothing.
                self.led.set("delivered")
                self.journal.write("delivered", {"report_id": report_id}, led="delivered")
                self._delivered_event.set()

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> int:
        """Wait, identify, inspect, deliver; again after the cable is pulled and plugged back (or once)."""
        cfg = self.config
        self.journal.write("start", {"hardware": cfg.hardware_name, "cafe_port": cfg.cafe_port,
                                     "officer_link": cfg.officer_link, "home": str(self.home.root),
                                     "once": cfg.once, "pid": os.getpid()})
        cafe = officer = deliverer = None
        code = EXIT_OK
        try:
            cafe = CarrierWatch(cfg.cafe_port, bring_up=True, on_change=self._carrier_note(cfg.cafe_port))
            if cafe.raised:
                self.journal.write("port_up", {"iface": cfg.cafe_port})
            officer = (CarrierWatch(cfg.officer_link, on_change=self._carrier_note(cfg.officer_link))
                       if cfg.officer_link else None)
            deliverer = Deliverer(self.home, officer, self.journal, self._on_sent, self.stopping)
            if Outbox(self.home.outbox_path).pending() and not cfg.once:
                deliverer.kick()  # reports an earlier power cut left undelivered
            while not self.stopping.is_set():
                self.show("waiting", "waiting", {"iface": cfg.cafe_port})
                if not cafe.wait(True, cfg.wait_timeout, self.stopping):
                    if not self.stopping.is_set():
                        self.show("error", "wait_timeout", {"seconds": cfg.wait_timeout})
                        code = EXIT_NO_CARRIER
                    break
                try:
                    result = self.cycle(cafe)
                except Exception as exc:  # noqa: BLE001 - one plug-in failed; the probe stays in service
                    self.show("error", "cycle_failed", {"error": f"{type(exc).__name__}: {exc}"})
                    result = CycleResult(outcome="failed")
                if result.outcome == "report":
                    deliverer.kick()
                if cfg.once:
                    code = self._once_end(result)
                    break
                if result.outcome != "link_lost":
                    # Never twice on one plug: the next run needs the cable pulled and plugged back.
                    self.journal.write("await_unplug", {"iface": cfg.cafe_port})
                    cafe.wait(False, None, self.stopping)
                    if not self.stopping.is_set():
                        self.journal.write("unplugged", {"iface": cfg.cafe_port})
        except Exception as exc:  # noqa: BLE001 - the service logs one clear line and exits non-zero
            self.show("error", "fatal", {"error": f"{type(exc).__name__}: {exc}"})
            code = 1
        finally:
            self.stopping.set()
            for part in (deliverer, officer, cafe):
                if part is not None:
                    part.close()
            if self.signalled:
                self.led.set(OFF)
            self.led.close()  # a steady pattern stays (delivered: the officer may unplug), a blinking one goes dark
            self.journal.write("stop", {"exit": code, "peak_rss_mb": peak_rss_mb()},
                               led=OFF if self.signalled else None)
            self.journal.close()
        return code

    def _carrier_note(self, iface: str) -> Callable[[bool], None]:
        return lambda carrier: self.journal.write("carrier", {"iface": iface, "carrier": carrier})

    def _once_end(self, result: CycleResult) -> int:
        if result.outcome != "report":
            return EXIT_OK if result.outcome == "stopped" else EXIT_NOT_RUN
        timeout = self.config.wait_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._delivered_event.wait(0.5):
            if self.stopping.is_set() or (deadline is not None and time.monotonic() > deadline):
                break
        else:
            return EXIT_OK
        self.journal.write("not_delivered", {"report_id": result.report_id,
                                             "reason": "等待送达超时，报告留在发件箱 / delivery wait timed out; "
                                                       "the report stays in the outbox"})
        return EXIT_NOT_DELIVERED

    # -- one plug-in ------------------------------------------------------------------------------------------
    def _new_run_dir(self) -> Path:
        root = self.home.root / RUNS_DIR
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = datetime.now(self.config.tz).strftime("%Y%m%d-%H%M%S")
        return Path(tempfile.mkdtemp(prefix=f"{stamp}-", dir=root))  # 0700, a fresh name every time

    def cycle(self, cafe: CarrierWatch) -> CycleResult:
        """One plug-in: identify, then (on one clear match) run and queue the report."""
        from probe.net.identify import gather_signals
        from probe.net.link import LinkError, LinkLost, RawLink
        from probe.staging import Staging
        from probe.venue_match import match_venues

        losses = cafe.losses
        with self._led_lock:
            self._current_report = None
            self._delivered_event.clear()
        run_dir = self._new_run_dir()
        self.show("working", "link_up", {"iface": cafe.iface, "run_dir": str(run_dir)})
        t0 = time.monotonic()
        now = datetime.now(timezone.utc)
        candidates = _one_per_venue(Staging(self.home).candidates(now))
        self.journal.write("candidates", {"venues": [c.venue.venue_id for c in candidates],
                                          "packs": sorted({c.pack.payload.pack_id for c in candidates})})
        if not candidates:  # nothing to recognise: not even a question is asked on the café's LAN
            return self._not_run(run_dir, "none", {"reason": "没有有效的任务包（cafe-probe stage --list）/ no valid "
                                                             "task pack is staged (cafe-probe stage --list)"})
        try:
            link = RawLink(cafe.iface, run_dir / "identify.pcap")
        except LinkError as exc:
            return self._not_run(run_dir, "refused", {"reason": str(exc)})
        try:
            gateways = _gateways(candidates)
            signals = gather_signals(link, gateways, window=self.config.identify_window)
            ident = match_venues(signals, [(c.venue.venue_id, c.network) for c in candidates])
            identify_seconds = round(time.monotonic() - t0, 3)
            _write_json(run_dir / "identify.json", {
                "at": datetime.now(self.config.tz).isoformat(timespec="seconds"),
                "candidates": [{"venue_id": c.venue.venue_id, "pack_id": c.pack.payload.pack_id,
                                "task_id": c.pack.payload.task.id} for c in candidates],
                "signals": signals.model_dump(mode="json"), "outcome": ident.outcome, "chosen": ident.chosen,
                "reason": ident.reason, "scores": _plain(ident.scores), "seconds": identify_seconds})
            if cafe.losses != losses or not cafe.carrier:
                return self._not_run(run_dir, "link_lost", {"reason": LINK_LOST, "while": "identify"},
                                     pattern="waiting")
            if ident.outcome != "match" or ident.chosen is None:
                return self._not_run(run_dir, ident.outcome, {"reason": ident.reason, "seconds": identify_seconds})
            if self.stopping.is_set():
                return self._not_run(run_dir, "stopped", {"reason": STOP_ASKED})
            chosen = next(c for c in candidates if c.venue.venue_id == ident.chosen)
            self.journal.write("identified", {"venue_id": chosen.venue.venue_id, "name": chosen.venue.name,
                                              "pack_id": chosen.pack.payload.pack_id,
                                              "task_id": chosen.pack.payload.task.id, "reason": ident.reason,
                                              "seconds": identify_seconds})
            identification = VenueIdentification(
                signals=signals, candidates=[c.venue.venue_id for c in candidates], outcome=ident.outcome,
                chosen=ident.chosen, reason=ident.reason, seconds=identify_seconds)
            return self._inspect(cafe, losses, chosen, link, run_dir, t0, identification)
        except LinkLost as exc:
            # Before the run began (identifying, claiming the address): nothing gathered yet to keep.
            return self._not_run(run_dir, "link_lost", {"reason": str(exc), "while": "identify"}, pattern="waiting")
        finally:
            link.close()

    def _not_run(self, run_dir: Path, outcome: str, detail: dict[str, Any], pattern: str = "error") -> CycleResult:
        """Nothing past the identification: the reason on the LED and in the journal and the run directory."""
        detail = {**detail, "run_dir": str(run_dir)}
        (run_dir / "outcome.json").write_text(json.dumps({"outcome": outcome, **detail}, ensure_ascii=False,
                                                         indent=1), encoding="utf-8")
        event = {"none": "no_match", "ambiguous": "ambiguous"}.get(outcome, outcome)
        self.show(pattern, event, detail)
        return CycleResult(outcome=outcome, run_dir=run_dir, pattern=pattern, detail=detail)

    def _inspect(self, cafe: CarrierWatch, losses: int, chosen: Any, link: Any, run_dir: Path,
                 t0: float, identification: VenueIdentification) -> CycleResult:
        from probe.clock import check_clock
        from probe.net.address import AddressClaimError, claim_address, reserved_addresses
        from probe.profile import ProfileError, load_profile
        from probe.taskpack import write_venue

        pack = chosen.pack.payload
        private = _private_dir(self.home)
        try:
            profile_path = write_venue(chosen.pack, chosen.venue.venue_id, private / "venue")
            try:
                avoid = reserved_addresses(load_profile(profile_path))
            except ProfileError as exc:
                first = exc.problems[0] if exc.problems else str(exc)
                return self._not_run(run_dir, "refused", {"reason": f"场所档案无效 / bad profile: {first}"})
            with contextlib.ExitStack() as claimed:
                try:
                    address = claimed.enter_context(claim_address(cafe.iface, chosen.network, link, avoid=avoid))
                except AddressClaimError as exc:
                    return self._not_run(run_dir, "refused", {"reason": str(exc)})
                link.close()  # the run opens its own link and capture; this one served identification
                self.journal.write("address", {"iface": cafe.iface, "address": str(address),
                                               "how": address.how, "taken": _plain(address.taken)})
                clock = check_clock(pack.agent.url, self.config.clock_tolerance, timeout=CLOCK_TIMEOUT,
                                    tz=str(self.config.tz.key))
                self.journal.write("clock", {"ok": clock.ok, "offset": clock.device_offset,
                                             "synchronised": clock.synchronised, "reason": clock.reason})
                opts = RunOptions(profile=profile_path, iface=cafe.iface, out=run_dir, home=self.home.root,
                                  timezone=str(self.config.tz.key), task_id=pack.task.id,
                                  inspectors=list(chosen.venue.inspectors), task_pack=pack.pack_id, clock=clock,
                                  identification=identification)
                try:
                    prep = prepare(opts)
                except RunRefused as exc:
                    return self._not_run(run_dir, "refused", {"reason": str(exc)})
                prep.probe_address = address  # the address claimed for this run, whatever the profile proposed

                def stop() -> str | None:
                    if self.stopping.is_set():
                        return STOP_ASKED
                    return cafe.lost(losses)

                def stage(name: str) -> None:
                    self.journal.write("stage", {"stage": name})

                self.journal.write("run_start", {"venue_id": chosen.venue.venue_id, "task_id": pack.task.id})
                try:
                    obs, findings = execute(prep, opts, Progress(stage=stage), stop=stop)
                except RunRefused as exc:
                    return self._not_run(run_dir, "refused", {"reason": str(exc)})
        finally:
            shutil.rmtree(private, ignore_errors=True)
        return self._queued(run_dir, obs, findings, t0)

    def _queued(self, run_dir: Path, obs: Any, findings: list[Any], t0: float) -> CycleResult:
        identity = self.home.identity()
        try:
            payload = verify_report((run_dir / REPORT_FILE).read_bytes(),
                                    {identity.key_id: identity.public_key}).payload
        except ReportError as exc:  # our own fresh signature: only a broken disk gets here
            return self._not_run(run_dir, "refused", {"reason": str(exc)})
        failures = sum(f.status.value == "fail" for f in findings)
        clock_ok = obs.run.clock.ok if obs.run.clock is not None else None
        pattern = end_pattern(obs.run.complete, clock_ok, failures)
        verdict = ("完成 / complete" if obs.run.complete else
                   f"未完成（中断）/ incomplete (interrupted): {payload.incomplete_reason}")
        detail = {"report_id": payload.report_id, "complete": obs.run.complete, "result": verdict,
                  "incomplete_reason": payload.incomplete_reason,
                  "stages_done": obs.run.interrupted.stages_done if obs.run.interrupted else None,
                  "clock_ok": clock_ok, "counts": {s.value: n for s, n in payload.counts.items()},
                  "venue_id": payload.venue.id, "run_dir": str(run_dir),
                  "seconds_since_link_up": round(time.monotonic() - t0, 3)}
        with self._led_lock:
            self._current_report = payload.report_id
            self.led.set(pattern)
            self.journal.write("queued", detail, led=pattern)
        return CycleResult(outcome="report", run_dir=run_dir, report_id=payload.report_id,
                           complete=obs.run.complete, pattern=pattern, detail=detail)


def peak_rss_mb() -> float | None:
    """This process's peak resident memory so far (VmHWM), in MB; None where /proc cannot tell.

    Read from the process itself: a parent's ``wait4`` would also count the
    parent's own memory, which a vfork-started child shares until its exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _one_per_venue(candidates: list[Any]) -> list[Any]:
    """One candidate per venue: a venue in two valid packs runs under the pack issued last."""
    best: dict[str, Any] = {}
    for c in candidates:
        seen = best.get(c.venue.venue_id)
        if seen is None or c.pack.payload.issued_at > seen.pack.payload.issued_at:
            best[c.venue.venue_id] = c
    return list(best.values())


def _gateways(candidates: list[Any]) -> list[IPv4Address]:
    return list(dict.fromkeys(g for c in candidates for g in c.network.gateways))


def _private_dir(home: ProbeHome) -> Path:
    """A fresh 0700 directory for one run's venue secrets: under $RUNTIME_DIRECTORY (tmpfs under systemd),
    else under the probe home; the caller removes it."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    base = Path(runtime) if runtime and Path(runtime).is_dir() else home.root
    return Path(tempfile.mkdtemp(prefix=".venue-", dir=base))


def _plain(value: Any) -> Any:
    """Pydantic models and dataclasses inside a result, as JSON-ready data."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
