"""Namespace plumbing for the lab: batched ``ip`` calls, in-process setns, processes by PID.

Only the lab uses this module. The probe never enters or creates namespaces.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from pyroute2 import netns as _netns

__all__ = ["LabCommandError", "ProcRecord", "ip_batch", "inside", "sysctl", "spawn", "stop", "netns_exists",
           "record_of", "is_running", "ipv4_only", "add_ipv4_namespaces"]


class LabCommandError(RuntimeError):
    """A system command the lab needs failed."""


def ip_batch(lines: Iterable[str], netns: str | None = None, force: bool = False) -> None:
    """Run many ``ip`` commands in one process (a fork per command costs ~10 ms)."""
    text = "".join(line + "\n" for line in lines)
    if not text:
        return
    cmd = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else []) + ["-batch", "-"]
    proc = subprocess.run(cmd, input=text, text=True, capture_output=True)
    if proc.returncode != 0 and not force:
        raise LabCommandError(f"{' '.join(cmd)}: {proc.stderr.strip()}")


def run_in(netns: str, argv: list[str], stdin: str | None = None) -> str:
    """Run one command inside a lab namespace and return its stdout."""
    proc = subprocess.run(["ip", "netns", "exec", netns, *argv], input=stdin, text=True, capture_output=True)
    if proc.returncode != 0:
        raise LabCommandError(f"{netns}: {' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    """Move the calling thread into a namespace for the block, and always back."""
    _netns.pushns(netns)
    try:
        yield
    finally:
        _netns.popns()


def sysctl(key: str, value: str | int) -> None:
    """Write a sysctl of the current thread's namespace (call inside ``inside``)."""
    Path("/proc/sys", key.replace(".", "/")).write_text(f"{value}\n")


def ipv4_only(names: Iterable[str]) -> None:
    """Turn IPv6 off in existing namespaces: the lab's cafés speak IPv4, and IPv6 chatter only blurs captures."""
    for name in names:
        with inside(name):
            sysctl("net.ipv6.conf.all.disable_ipv6", 1)
            sysctl("net.ipv6.conf.default.disable_ipv6", 1)


def add_ipv4_namespaces(names: Iterable[str]) -> None:
    """Create namespaces in one ``ip`` call and turn IPv6 off in each (:func:`ipv4_only`)."""
    names = list(names)
    ip_batch(f"netns add {n}" for n in names)
    ipv4_only(names)


@dataclass(frozen=True)
class ProcRecord:
    """A process the lab started: its PID plus the start time that proves it is still ours."""

    pid: int
    starttime: int
    what: str

    def to_json(self) -> dict:
        return asdict(self)


def _starttime(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces or parentheses; fields resume after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def spawn(netns: str, argv: list[str], what: str, log: Path, **kwargs) -> tuple[subprocess.Popen, ProcRecord]:
    """Start a daemon inside a namespace, in its own session, logging to a file."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdout=kwargs.pop("stdout", out),
                                stderr=out, stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)
    return proc, record_of(proc, what)


def record_of(proc: subprocess.Popen, what: str) -> ProcRecord:
    """The PID and start time of a process just started, for a later :func:`stop` that cannot hit another."""
    start = None
    for _ in range(100):
        start = _starttime(proc.pid)
        if start is not None:
            break
        time.sleep(0.01)
    return ProcRecord(pid=proc.pid, starttime=start or 0, what=what)


def is_running(record: ProcRecord) -> bool:
    """Whether the process of ``record`` is still the one that was started."""
    return _starttime(record.pid) == record.starttime


def stop(record: ProcRecord, timeout: float = 5.0) -> None:
    """Stop one process by its own PID, only if it is still the one we started."""
    if _starttime(record.pid) != record.starttime:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _starttime(record.pid) != record.starttime:
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(record.pid, os.WNOHANG)
        time.sleep(0.02)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(record.pid, os.WNOHANG)
