"""Autorun benchmark: a whole ``messy`` run by the headless probe, its peak memory and its times.

Run as root from the repository root with the project's virtualenv python:

    python bench/autorun.py [--runs 1] [--scenario messy]

Per run it builds the lab café (``lab.build.running``, the probe's café port
unplugged and unaddressed, with an officer link), stages one task pack of three
venues (the café itself with its gateway MAC, a twin on the same LAN plan, a
venue on another subnet; tests.autorunkit), serves a real ``cafe-agent`` in the
lab's device namespace at the far end of the officer link, starts ``cafe-probe
autorun --once`` in the probe namespace, plugs the café cable in and waits
until the report is on the agent. Everything is torn down afterwards, whatever
happens. The peak memory is the autorun process's own VmHWM, which it writes
in its journal's last line, against the 150 MB a Raspberry Pi can give it.
(Not ``os.wait4``'s ``ru_maxrss`` of the Popen: Python starts children with
vfork, and until its exec the child shares this bench's memory, so ru_maxrss
reports the bench's size, ~150 MB, whatever the autorun uses.) From the
autorun's journal:

* link-up: from the lab plugging the cable to the journal's ``link_up`` (the
  kernel's carrier notification, through netlink);
* identification: ``link_up`` to ``identified`` (listen, ARP probes, DHCP offers);
* link-up to report in the outbox: ``link_up`` to ``queued`` (identification,
  address, clock check, the whole inspection, signing);
* delivery: ``queued`` to ``delivered`` (the officer link is up all along).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab.build import running  # noqa: E402
from tests.agentkit import served_agent, stop_process  # noqa: E402
from tests.autorunkit import (DEVICE, PORT, Journal, lab_hardware, stage_venues, start_autorun,  # noqa: E402
                              venue_profiles, with_gateway_mac)
from tests.conftest import new_lab_id  # noqa: E402
from tests.packkit import lab_profile  # noqa: E402

RSS_TARGET_MB = 150.0


def _at(line: dict) -> float:
    return datetime.fromisoformat(line["at"]).timestamp()


def one_run(scenario: str, tmp: Path) -> dict[str, float | str]:
    """One plug-in of the headless probe in a fresh lab café; its figures."""
    data = tmp / "agent"
    with running(scenario, new_lab_id("ba"), probe_plugged=False, probe_addressed=False, officer_link=True) as lab:
        truth = lab.truth()
        mac = truth["lan"]["router"]["mac"]
        if scenario == "messy":
            profiles = venue_profiles(tmp / "venues", mac)
        else:
            own, _ = lab_profile(tmp / "src", scenario)
            profiles = [with_gateway_mac(own, mac, tmp / scenario)]
        probe = stage_venues(tmp, profiles, data)
        hardware, _ = lab_hardware(tmp)
        lab.set_officer_link(True)
        with served_agent(data, tmp / "agent.log", port=PORT, wrap=lab.device_exec_argv, host=DEVICE):
            proc = start_autorun(lab, hardware, probe.home, tmp / "autorun.out", wait_timeout=600)
            journal = Journal(probe.home, proc)
            try:
                journal.wait("waiting", 60)
                plugged = time.time()
                lab.set_probe_plugged(True)
                journal.wait("delivered", 600)
                proc.wait(60)
            finally:
                stop_process(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"autorun exited {proc.returncode}: {(tmp / 'autorun.out').read_text()[-2000:]}")
    link_up = journal.wait("link_up", 0)
    identified = journal.wait("identified", 0)
    queued = journal.wait("queued", 0)
    delivered = journal.wait("delivered", 0)
    stop = journal.wait("stop", 0)
    return {"venue": identified["detail"]["venue_id"], "peak_mb": stop["detail"]["peak_rss_mb"],
            "link_up_s": _at(link_up) - plugged, "identify_s": _at(identified) - _at(link_up),
            "to_outbox_s": _at(queued) - _at(link_up), "deliver_s": _at(delivered) - _at(queued),
            "counts": " ".join(f"{k} {v}" for k, v in queued["detail"]["counts"].items() if v)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--scenario", default="messy")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    rows = []
    for k in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="cafe-bench-autorun-") as tmp:
            row = one_run(args.scenario, Path(tmp))
        rows.append(row)
        print(f"run {k}: venue {row['venue']} · peak RSS {row['peak_mb']:.1f} MB · link-up seen after "
              f"{row['link_up_s']:.2f} s · identification {row['identify_s']:.2f} s · link-up → report in the "
              f"outbox {row['to_outbox_s']:.1f} s · delivery {row['deliver_s']:.2f} s · findings {row['counts']}",
              flush=True)
    peak = max(float(r["peak_mb"]) for r in rows)
    print(f"\n{args.scenario}, {len(rows)} run(s) of cafe-probe autorun --once:")
    print(f"  peak RSS of the autorun process: {peak:.1f} MB (target < {RSS_TARGET_MB:.0f} MB: "
          f"{'met' if peak < RSS_TARGET_MB else 'MISSED'})")
    for key, label in (("identify_s", "identification"), ("to_outbox_s", "link-up → report in the outbox"),
                       ("link_up_s", "cable plugged → link-up seen"), ("deliver_s", "report queued → delivered")):
        values = [float(r[key]) for r in rows]
        print(f"  {label}: median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})")
    return 0 if peak < RSS_TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
