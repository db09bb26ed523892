"""The SFTP log reader against Debian's real OpenSSH sshd, in namespaces this module builds and removes.

Topology: client eth0 198.18.67.250/24 ── srv eth0 198.18.67.1/24 [sshd :22, a silent listener :2200]

The server's tree (chroot under /run/cafe-lab, see lab/sshd.py) holds dated names, undated names with
timestamps inside, nested folders, a Windows-style drive folder and a 20,000-file folder. Every read
runs in the client namespace; the tree is hashed before and after.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import time
import tracemalloc
from datetime import date, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lab import netns as ns
from lab.sshd import (
    KEY_USER,
    ensure_lab_users,
    log_since,
    make_host_key,
    make_user_key,
    new_server_root,
    remove_server_root,
    sshd_config,
    start_sshd,
)
from probe.logdates import load_line_formats
from probe.net.ssh import read_sources
from probe.observations import DayRange, LogSourceRead
from probe.profile import LogSource
from tests.conftest import new_lab_id

pytestmark = pytest.mark.lab

SERVER = IPv4Address("198.18.67.1")
CLIENT = "198.18.67.250"
SILENT_PORT = 2200
# Only a hang takes this long; how fast the reads are is bench/logs.py's figure.
HUNG = 60.0
# Long enough that "at once" (a refusal) and "at the timeout" are told apart on a busy machine.
CONNECT_TIMEOUT = 3.0
TZ = ZoneInfo("Asia/Shanghai")
BIG_FILES = 20_000
D = date.fromisoformat


def _epoch(day: date, hour: int = 12) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=TZ).timestamp())


def _days(first: date, last: date):
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _write(path: Path, text: str | bytes, mtime: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _make_tree(root: Path) -> None:
    (root / "srv").mkdir()  # the session's start directory: relative paths resolve here
    billing = root / "logs" / "billing"
    for day in [*_days(D("2026-01-01"), D("2026-01-10")), *_days(D("2026-01-13"), D("2026-01-20"))]:
        _write(billing / f"billing-{day:%Y%m%d}.log", f"{day} 上机 07号机\n", _epoch(day))
    _write(billing / "README", "no dates here\n")
    _write(billing / "old" / "billing-20251201.log", "2025-12-01 x\n")  # not recursive: not listed

    app = root / "logs" / "app"
    lines = [f"2026-02-0{1 + i // 60} {i % 24:02d}:00:00 INFO request {i} " + "x" * 80 for i in range(300)]
    _write(app / "app.log", "\n".join(lines) + "\n")  # ~27 KB: only its edges are read
    _write(app / "app.log.1", "2026年1月28日 09:00:00 会员上机\n2026年1月29日 23:00:00 会员下机\n")
    _write(app / "events.log", "2026-01-30T20:00:00Z started\n")  # 04:00 on the 31st in Shanghai
    _write(app / "sys.log", "Jan 25 08:00:00 srv cron: a\nJan 26 09:00:00 srv cron: b\n", _epoch(D("2026-01-27")))
    _write(app / "dec.log", "Dec 30 08:00:00 srv cron: a\n", _epoch(D("2026-01-02")))  # last year's December
    _write(app / "blob.bin", bytes(range(256)) * 20)
    (app / "etc-link").symlink_to("/etc/hostname")  # a link is never followed
    (app / "dir-link").symlink_to("/logs/billing")

    nested = root / "logs" / "nested"
    _write(nested / "audit-2026-03-04.log", "a\n")
    _write(nested / "a" / "audit-2026-03-01.log", "a\n")
    _write(nested / "a" / "b" / "audit-2026-03-02.log", "a\n")

    drive = root / "C:" / "logs"
    for day in (D("2026-04-01"), D("2026-04-02")):
        _write(drive / f"pos-{day:%Y%m%d}.txt", "x\r\n")

    big = root / "logs" / "big"
    big.mkdir(parents=True)
    start = D("2025-06-01")
    for i in range(BIG_FILES):
        day = start + timedelta(days=i // 100)
        (big / f"pos-{day:%Y%m%d}-{i % 100:06d}.log").write_bytes(b"")


def _tree_digest(root: Path) -> str:
    """Every name, type, mode, size, mtime and content byte under root (links as their targets' text)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            st = path.lstat()
            digest.update(f"{path.relative_to(root)}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
            if stat.S_ISREG(st.st_mode):
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            elif stat.S_ISLNK(st.st_mode):
                digest.update(os.readlink(path).encode())
    return digest.hexdigest()


def _secret(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    lab_id = new_lab_id("h")
    names = {"srv": f"{lab_id}-srv", "cli": f"{lab_id}-cli"}
    state = tmp_path_factory.mktemp("sshd-state")
    secrets_dir = tmp_path_factory.mktemp("ssh-secrets")
    made: list[str] = []
    base = record = proc = silent = None
    try:
        users = ensure_lab_users()
        for name in names.values():
            made.append(name)
            ns.ip_batch([f"netns add {name}"])
        ns.ipv4_only(names.values())
        ns.ip_batch(["link set lo up", f"link add eth0 type veth peer name eth0 netns {names['cli']}",
                     f"addr add {SERVER}/24 dev eth0", "link set eth0 up"], netns=names["srv"])
        ns.ip_batch(["link set lo up", f"addr add {CLIENT}/24 dev eth0", "link set eth0 up"], netns=names["cli"])
        base = new_server_root(lab_id)
        _make_tree(base / "root")
        host_pin = make_host_key(state / "ssh_host_ed25519_key")
        other_pin = make_host_key(state / "other_host_key")  # what a swapped server would show
        user_pub = make_user_key(secrets_dir / "user_key")
        (base / "authorized_keys" / KEY_USER).write_text(user_pub + "\n")
        os.chmod(base / "authorized_keys" / KEY_USER, 0o644)
        config = sshd_config(SERVER, 22, state / "ssh_host_ed25519_key", base,
                             [users.password_user, users.key_user], state_dir=state, start_dir="/srv")
        proc, record = start_sshd(names["srv"], state, config)
        with ns.inside(names["srv"]):  # accepts TCP (the kernel does) but never says a word
            silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        silent.bind((str(SERVER), SILENT_PORT))
        silent.listen(8)
        _secret(secrets_dir / "password", users.password_file.read_text())
        _secret(secrets_dir / "wrong", "not-the-password\n")
        yield {"names": names, "state": state, "root": base / "root", "secrets": secrets_dir,
               "host_pin": host_pin, "other_pin": other_pin, "users": users,
               "before": _tree_digest(base / "root")}
    finally:
        if silent is not None:
            silent.close()
        if record is not None:
            ns.stop(record)  # by its PID
            proc.wait(timeout=5)
        if base is not None:
            remove_server_root(base)
        ns.ip_batch((f"netns del {n}" for n in made), force=True)
    assert not any(ns.netns_exists(n) for n in made)


@pytest.fixture(scope="module")
def formats():
    return load_line_formats()


def _source(server, *, paths, user: str | None = None, secret: str = "password", port: int = 22,
            pin: str | None = "host", address: str = str(SERVER)) -> LogSource:
    cred = ({"key_file": str(server["secrets"] / "user_key")} if secret == "key"
            else {"password_file": str(server["secrets"] / secret)})
    host_key = {"host": server["host_pin"], "other": server["other_pin"], None: None}[pin]
    return LogSource.model_validate({
        "address": address, "port": port, "username": user or server["users"].password_user,
        "host_key": host_key, "paths": paths, **cred})


def _read(server, formats, sources, **kw) -> tuple[list[LogSourceRead], float]:
    started = time.monotonic()
    with ns.inside(server["names"]["cli"]):  # every socket is made in the client namespace
        reads = read_sources(sources, formats=formats, tz=TZ, **kw)
    return reads, time.monotonic() - started


def _log_until(server, offset: int, pattern: str) -> str:
    """The sshd log after ``offset`` once ``pattern`` (a regex) is in it; the deadline only catches sshd never
    writing it."""
    deadline = time.monotonic() + 30
    while not re.search(pattern, text := log_since(server["state"], offset)):
        assert time.monotonic() < deadline, f"sshd never logged {pattern!r}: {text}"
        time.sleep(0.05)
    return text


def _ranges(*pairs: str) -> list[DayRange]:
    out = []
    for pair in pairs:
        first, _, last = pair.partition("..")
        out.append(DayRange(first=D(first), last=D(last or first)))
    return out


PATHS = [
    {"path": "/logs/billing", "name_pattern": "billing-%Y%m%d.log"},
    {"path": "/logs/app"},
    {"path": "/logs/nested", "name_pattern": "audit-%Y-%m-%d.log", "recursive": True},
    {"path": "/logs/nested", "name_pattern": "audit-%Y-%m-%d.log"},
    {"path": "C:/logs", "name_pattern": "pos-%Y%m%d.txt"},
    {"path": "C:\\logs", "name_pattern": "pos-%Y%m%d.txt"},
    {"path": "/logs/nope", "name_pattern": "x-%Y%m%d.log"},
]


@pytest.fixture(scope="module")
def full(server, formats):
    reads, seconds = _read(server, formats, [_source(server, paths=PATHS)])
    return reads[0], seconds


def test_password_source_with_pinned_key(full):
    read, seconds = full
    assert read.ok and read.error is None, read.error_detail
    assert read.host_key_pinned and read.host_key_seen
    assert read.address == SERVER and read.port == 22 and len(read.folders) == len(PATHS)
    assert seconds < HUNG


def test_dated_names_exact_ranges(full):
    billing = full[0].folders[0]
    assert billing.ok and billing.files == 19 and billing.dated_by_name == 18
    # README has no date in its name and none inside: undated, but listed (evidence)
    assert billing.undated == 1 and billing.dated_by_content == 0
    assert billing.covered == _ranges("2026-01-01..2026-01-10", "2026-01-13..2026-01-20")
    assert (billing.oldest, billing.newest) == (D("2026-01-01"), D("2026-01-20"))
    assert billing.listing_sha256 and len(billing.listing_sha256) == 64
    assert billing.bytes_read == len("no dates here\n")  # only the undated file was opened


def test_undated_names_dated_from_their_lines(full, server):
    app = full[0].folders[1]
    assert app.ok and app.files == 6 and app.dated_by_content == 5 and app.undated == 1
    assert app.covered == _ranges("2025-12-30", "2026-01-25..2026-01-26", "2026-01-28..2026-01-29",
                                  "2026-01-31..2026-02-05")
    size = (server["root"] / "logs/app/app.log").stat().st_size
    assert size > 3 * 4096  # its middle was never read: edges only
    assert app.bytes_read < 5 * 4096 + 1000


def test_recursive_and_flat(full):
    deep, flat = full[0].folders[2], full[0].folders[3]
    assert deep.ok and deep.files == 3 and deep.covered == _ranges("2026-03-01..2026-03-02", "2026-03-04")
    assert flat.ok and flat.files == 1 and flat.covered == _ranges("2026-03-04")


def test_windows_drive_paths(full):
    for folder in full[0].folders[4:6]:
        assert folder.ok, folder.error_detail
        assert folder.files == 2 and folder.covered == _ranges("2026-04-01..2026-04-02")


def test_missing_folder_keeps_the_source(full):
    read = full[0]
    missing = read.folders[6]
    assert read.ok and not missing.ok and missing.error == "missing" and missing.files == 0


def test_key_user(server, formats):
    (read,), _ = _read(server, formats, [_source(server, user=KEY_USER, secret="key",
                                                 paths=[{"path": "/logs/billing",
                                                         "name_pattern": "billing-%Y%m%d.log"}])])
    assert read.ok and read.host_key_pinned, read.error_detail
    assert read.folders[0].covered == _ranges("2026-01-01..2026-01-10", "2026-01-13..2026-01-20")


def test_pinned_key_mismatch_sends_no_credentials(server, formats):
    log = server["state"] / "sshd.log"
    offset = log.stat().st_size
    (read,), seconds = _read(server, formats, [_source(server, pin="other", paths=PATHS[:1])])
    assert not read.ok and read.error == "host_key_mismatch" and not read.host_key_pinned
    assert read.host_key_seen == server["host_pin"] and read.folders == []
    # The connection's end is the last thing sshd logs of it: nothing of a login can come after.
    text = _log_until(server, offset, rf"Connection (reset|closed) by {re.escape(CLIENT)} port")
    assert f"Connection from {CLIENT}" in text
    for trace in ("Accepted", "Failed", "Invalid user", "userauth", "Postponed"):
        assert trace not in text, text
    assert seconds < HUNG


def test_wrong_password(server, formats):
    log = server["state"] / "sshd.log"
    offset = log.stat().st_size
    (read,), _ = _read(server, formats, [_source(server, secret="wrong", paths=PATHS[:1])])
    assert not read.ok and read.error == "auth" and read.host_key_pinned and read.folders == []
    _log_until(server, offset, re.escape(f"Failed password for {server['users'].password_user}"))
    assert "not-the-password" not in (read.error_detail or "")


def test_no_pin_records_the_key(server, formats):
    (read,), _ = _read(server, formats, [_source(server, pin=None, paths=PATHS[:1])])
    assert read.ok and not read.host_key_pinned and read.host_key_seen == server["host_pin"]
    assert read.folders[0].files == 19


def test_connection_failures_are_bounded(server, formats):
    sources = [_source(server, port=2222, paths=PATHS[:1]),
               _source(server, address="192.0.2.9", paths=PATHS[:1]),
               _source(server, port=SILENT_PORT, paths=PATHS[:1])]
    reads, seconds = _read(server, formats, sources, connect_timeout=CONNECT_TIMEOUT)
    # Which way each one ended is the error; the times say a refusal and an unreachable address did not
    # wait for the connect timeout, and the silent port (it accepts, never greets) waited for that timeout
    # and not for the source's whole time limit (60 s).
    assert [r.error for r in reads] == ["refused", "unreachable", "timeout"]
    assert all(not r.ok and r.host_key_seen is None for r in reads)
    assert reads[0].seconds < CONNECT_TIMEOUT / 2 and reads[1].seconds < CONNECT_TIMEOUT / 2
    assert 0.9 * CONNECT_TIMEOUT < reads[2].seconds < CONNECT_TIMEOUT + 10
    assert seconds < HUNG


def test_unreadable_credentials_stop_before_connecting(server, formats):
    source = _source(server, secret="wrong", paths=PATHS[:1])
    gone = server["secrets"] / "wrong"
    saved = gone.read_text()
    gone.unlink()
    try:
        (read,), _ = _read(server, formats, [source])
    finally:
        _secret(gone, saved)
    assert not read.ok and read.error == "credentials_unreadable" and read.host_key_seen is None


def test_source_time_limit(server, formats):
    (read,), seconds = _read(server, formats, [_source(server, paths=[{"path": "/logs/big"}])],
                             source_timeout=0.5)
    folder = read.folders[0]
    assert folder.error == "timeout" and not folder.ok  # the limit, not the end of the listing, stopped it
    assert seconds < HUNG


def test_twenty_thousand_files(server, formats, record_property):
    tracemalloc.start()
    try:
        (read,), seconds = _read(server, formats, [_source(server, paths=[
            {"path": "/logs/big", "name_pattern": "pos-%Y%m%d-%H%M%S.log"}])])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    folder = read.folders[0]
    assert folder.ok and folder.files == BIG_FILES and folder.dated_by_name == BIG_FILES
    assert folder.covered == _ranges(f"2025-06-01..{D('2025-06-01') + timedelta(days=BIG_FILES // 100 - 1)}")
    assert folder.bytes_read == 0
    record_property("seconds", round(seconds, 2))
    record_property("python_peak_mib", round(peak / 2**20, 1))
    print(f"20,000 files listed and judged over SFTP: {seconds:.2f} s, Python peak {peak / 2**20:.1f} MiB")
    assert seconds < HUNG  # the 5 s target is tracked by bench/logs.py


def test_tree_unchanged(server, formats):
    # Runs last in this module: every read above has happened.
    assert _tree_digest(server["root"]) == server["before"]
