"""Log-folder benchmark: list and judge the 20,000-file folder over SFTP, and the same folder offline.

Run as root from the repository root with the project's virtualenv python:

    python bench/logs.py [--runs 3]

The ``logs`` lab is built once (``lab.build.running``) and torn down
afterwards whatever happens. Per run, each in a fresh child python:

* ssh: in the probe's namespace (``Lab.exec_argv``), against the lab's real
  sshd, ``probe.net.ssh.read_sources`` on the staged profile's source that
  names the big folder (key login, pinned host key), then the LOG-RETENTION
  coverage of what it read (``probe.checks.log_retention.coverage``, 180
  days, no gap allowed) -- what a run does for that source;
* offline: ``probe.logdates.read_local_folder`` on the same folder in the
  server's tree (what ``cafe-probe logs --path`` does with a copy), then the
  same coverage.

Each child reports its own wall time for read + judge (imports excluded) and
its peak RSS (``ru_maxrss``, imports included: the whole process). The wall
time seen from outside, start-up included, is shown too. Medians of the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab.build import Lab, running  # noqa: E402
from tests.conftest import new_lab_id  # noqa: E402

TARGET_SECONDS = 5.0
RETENTION_DAYS, GAP_ALLOWANCE = 180, 0  # rules/catalogue.yaml LOG-RETENTION

# argv: mode ("ssh" | "offline"), profile, folder path on the server, local root of the server's tree.
CHILD = r"""
import json, resource, sys, time
from datetime import datetime
from zoneinfo import ZoneInfo
from probe.checks.log_retention import coverage
from probe.logdates import load_line_formats, read_local_folder
from probe.net.ssh import read_sources
from probe.profile import load_profile
mode, profile, path, root = sys.argv[1:5]
tz = ZoneInfo("Asia/Shanghai")
formats = load_line_formats()
source = next(s for s in load_profile(profile).servers.log_sources if any(p.path == path for p in s.paths))
spec = next(p for p in source.paths if p.path == path)
start = time.perf_counter()
if mode == "ssh":
    (read,) = read_sources([source.model_copy(update={"paths": [spec]})], formats=formats, tz=tz)
    folder = read.folders[0] if read.ok else None
else:
    folder = read_local_folder(root + path, spec, formats, tz)
today = datetime.now(tz).date()
cov = coverage(folder.covered, today, int(sys.argv[5]), int(sys.argv[6])) if folder else None
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "files": folder.files if folder else None, "error": None if folder else read.error,
                  "meets": cov.meets if cov else None, "oldest": str(cov.oldest) if cov else None}))
"""


def _child(lab: Lab, mode: str, profile: str, path: str, root: Path) -> dict:
    argv = ["python", "-c", CHILD, mode, profile, path, str(root), str(RETENTION_DAYS), str(GAP_ALLOWANCE)]
    # The SFTP read runs where the probe sits; the offline read needs no network, so no namespace.
    argv = lab.exec_argv(argv) if mode == "ssh" else [sys.executable, *argv[1:]]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=str(REPO))
    outside = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{mode} child failed: {proc.stderr[-1500:]}")
    return {**json.loads(proc.stdout), "outside": outside}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with running("logs", new_lab_id("bl")) as lab:
        truth = lab.truth()
        server = truth["log_servers"][0]
        big = max(server["folders"], key=lambda f: f["files"])
        results: dict[str, list[dict]] = {"ssh": [], "offline": []}
        for _ in range(args.runs):
            for mode in results:
                row = _child(lab, mode, truth["profile"], big["path"], Path(server["root"]))
                if row["files"] != big["files"]:
                    raise SystemExit(f"{mode}: listed {row['files']} files, the lab made {big['files']}")
                results[mode].append(row)
    print(f"folder {big['path']}: {big['files']} files, {big['bytes']} bytes, "
          f"{big['oldest']} to {big['newest']} (lab today {truth['logs_today']}); {args.runs} runs, medians")
    print(f"{'path':8} {'read+judge s':>13} {'outside s':>10} {'peak RSS MiB':>13} {'meets':>6}")
    for mode, rows in results.items():
        print(f"{mode:8} {statistics.median(r['seconds'] for r in rows):13.2f} "
              f"{statistics.median(r['outside'] for r in rows):10.2f} "
              f"{statistics.median(r['maxrss_kb'] for r in rows) / 1024:13.1f} {str(rows[0]['meets']):>6}")
    ssh = statistics.median(r["seconds"] for r in results["ssh"])
    print(f"target < {TARGET_SECONDS:.0f} s over SSH: {'met' if ssh < TARGET_SECONDS else 'MISSED'} ({ssh:.2f} s)")


if __name__ == "__main__":
    main()
