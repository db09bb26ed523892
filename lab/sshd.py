"""The lab's log server: Debian's real OpenSSH ``sshd`` in a lab namespace, SFTP only, read-only.

Users. sshd needs real accounts (it looks users up in the system's passwd
and shadow before anything else), so the lab uses two system accounts,
created once and reused by every lab: ``cafelab-log`` (password) and
``cafelab-key`` (public key only). Both are ``useradd --system
--no-create-home``, home ``/nonexistent``, shell ``/usr/sbin/nologin``. The
password is made once, kept in ``/var/lib/cafe-lab/sshd/cafelab-log.password``
(root, 0600) and set again with ``chpasswd`` on every start (idempotent, so
two labs at once agree). ``cafelab-key`` gets the non-locking password ``*``
(no password login; sshd without PAM refuses ``!``-locked accounts even for
keys). :func:`ensure_lab_users` refuses (RuntimeError) when it cannot do this.

Confinement. Each server gets a root-owned directory under ``/run/cafe-lab``
(:func:`new_server_root`): ``root/`` is the ``ChrootDirectory`` the SFTP
session sees as ``/`` (the log tree goes there), ``authorized_keys/<user>``
holds the keys. sshd requires every component of a chroot path to be
root-owned and not writable by others, which ``/tmp`` is not, hence
``/run``. ``ForceCommand internal-sftp -R``: no shell, no exec, no writes
even if a client asked; no forwarding of any kind; no PAM (its session
modules fail in namespaces and add nothing here).
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from lab import netns as ns

__all__ = ["SSHD", "PASSWORD_USER", "KEY_USER", "LabUsers", "ensure_lab_users", "make_host_key",
           "make_user_key", "new_server_root", "remove_server_root", "sshd_config", "start_sshd",
           "log_since"]

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
PASSWORD_USER = "cafelab-log"
KEY_USER = "cafelab-key"
USER_STATE = Path("/var/lib/cafe-lab/sshd")
SERVER_ROOTS = Path("/run/cafe-lab")
START_TIMEOUT = 5.0
_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class LabUsers:
    """The lab's two SFTP accounts; the password sits in a root-only 0600 file, never in memory longer."""

    password_user: str
    password_file: Path
    key_user: str


def _run(argv: list[str], stdin: str | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, text=True, capture_output=True)
    if proc.returncode != 0:
        # Only stderr: chpasswd's input (the password) is never echoed into an error.
        raise RuntimeError(f"{argv[0]}: {proc.stderr.strip()[:300]}")


def _ensure_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    _run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
          "--shell", "/usr/sbin/nologin", "--comment", "cafe-probe lab SFTP", name])


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def ensure_lab_users() -> LabUsers:
    """Create the lab accounts if missing and (re)set their passwords; RuntimeError if that cannot be done."""
    if os.geteuid() != 0:
        raise RuntimeError("the lab sshd needs root (system accounts, chroot)")
    for tool in ("useradd", "chpasswd", "usermod"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found; the lab sshd cannot create its accounts")
    for name in (PASSWORD_USER, KEY_USER):
        _ensure_user(name)
    USER_STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(USER_STATE, 0o700)
    password_file = USER_STATE / f"{PASSWORD_USER}.password"
    if not password_file.exists():
        _write_private(password_file, secrets.token_urlsafe(24).encode() + b"\n")
    password = password_file.read_text().strip()
    _run(["chpasswd"], stdin=f"{PASSWORD_USER}:{password}\n")
    _run(["usermod", "-p", "*", KEY_USER])
    return LabUsers(PASSWORD_USER, password_file, KEY_USER)


def _keygen(path: Path, comment: str) -> str:
    path = Path(path)
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    _run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    os.chmod(path, 0o600)
    kind, blob = path.with_name(path.name + ".pub").read_text().split()[:2]
    return f"{kind} {blob}"


def make_host_key(path: Path) -> str:
    """A fresh Ed25519 host key at ``path`` (0600) and ``path.pub``; returns the '<type> <base64>' pin."""
    return _keygen(path, "cafe-lab-host")


def make_user_key(path: Path) -> str:
    """A fresh Ed25519 client key at ``path`` (0600, no passphrase); returns its public line."""
    return _keygen(path, "cafe-lab-user")


def new_server_root(lab_id: str) -> Path:
    """``/run/cafe-lab/sshd-<lab_id>`` with ``root/`` (the chroot) and ``authorized_keys/``, root-owned 0755."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", lab_id):
        raise ValueError("lab id: letters, digits, '-' and '_' only")
    SERVER_ROOTS.mkdir(mode=0o755, exist_ok=True)
    os.chmod(SERVER_ROOTS, 0o755)
    base = SERVER_ROOTS / f"sshd-{lab_id}"
    base.mkdir(mode=0o755)
    for sub in ("root", "authorized_keys"):
        (base / sub).mkdir(mode=0o755)
    return base


def remove_server_root(base: Path) -> None:
    """Remove a directory made by :func:`new_server_root` (and nothing else)."""
    base = Path(base)
    if base.parent != SERVER_ROOTS or not base.name.startswith("sshd-"):
        raise ValueError(f"{base} is not a lab server root")
    shutil.rmtree(base, ignore_errors=True)


def sshd_config(listen: IPv4Address, port: int, host_key: Path, server_root: Path, users: list[str],
                *, state_dir: Path, start_dir: str = "/") -> str:
    """sshd_config text for an SFTP-only, read-only server on ``listen:port``.

    ``server_root`` is from :func:`new_server_root`: the chroot is its
    ``root/``, keys are read from ``authorized_keys/<user>``. ``start_dir``
    is where a session starts inside the chroot (relative paths resolve
    there, as under a Windows user's home). The PID file goes to
    ``state_dir``; the log goes to stderr, which :func:`start_sshd` sends to
    ``state_dir/sshd.log``.
    """
    listen = IPv4Address(listen)
    if not 1 <= int(port) <= 65535:
        raise ValueError("port out of range")
    if not users or not all(_NAME.match(u) for u in users):
        raise ValueError("users: one or more plain account names")
    for path in (host_key, server_root, state_dir):
        if any(c.isspace() or c in "\"'#%" for c in str(path)):
            raise ValueError(f"{path}: no spaces, quotes, '#' or '%' in lab paths")
    if not start_dir.startswith("/") or any(c.isspace() or c in "\"'#%" for c in start_dir):
        raise ValueError("start_dir: an absolute path without spaces, quotes, '#' or '%'")
    lines = [
        "# cafe-probe lab sshd (generated): SFTP only, read-only, chrooted",
        f"ListenAddress {listen}:{int(port)}",
        "AddressFamily inet",
        f"HostKey {host_key}",
        f"PidFile {Path(state_dir) / 'sshd.pid'}",
        "LogLevel VERBOSE",
        "UsePAM no",
        "PermitRootLogin no",
        f"AllowUsers {' '.join(users)}",
        "PasswordAuthentication yes",
        "PermitEmptyPasswords no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        f"AuthorizedKeysFile {Path(server_root) / 'authorized_keys'}/%u",
        # The key files are root-owned 0644 under root-owned 0755 directories: strict checks pass.
        "StrictModes yes",
        "MaxAuthTries 3",
        "LoginGraceTime 20",
        # Tests open many short connections in a row; keep sshd from dropping them as a flood.
        "MaxStartups 100:30:200",
        "UseDNS no",
        "DisableForwarding yes",
        "AllowTcpForwarding no",
        "AllowStreamLocalForwarding no",
        "AllowAgentForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "PermitTTY no",
        "PermitUserRC no",
        "PermitUserEnvironment no",
        "PrintMotd no",
        "Subsystem sftp internal-sftp -R",
        f"ChrootDirectory {Path(server_root) / 'root'}",
        # Whatever the client asks for (a shell, a command, a subsystem), it gets read-only SFTP.
        f"ForceCommand internal-sftp -R -d {start_dir}",
        "",
    ]
    return "\n".join(lines)


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def _listens(netns: str, address: IPv4Address, port: int) -> bool:
    """Whether something accepts TCP on address:port inside ``netns`` (a connect from inside it)."""
    with ns.inside(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(0.5)
        return sock.connect_ex((str(address), port)) == 0
    finally:
        sock.close()


def log_since(state_dir: Path, offset: int) -> str:
    """The sshd log written after byte ``offset`` (tests look for what a connection did)."""
    with open(Path(state_dir) / "sshd.log", "rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def start_sshd(netns: str, state_dir: Path, config_text: str) -> tuple[subprocess.Popen, ns.ProcRecord]:
    """Start ``sshd -D -e -f CONFIG`` in ``netns`` and wait until it accepts on its ListenAddress.

    The config is written to ``state_dir/sshd_config`` (0600) and checked with
    ``sshd -t`` first; the log is ``state_dir/sshd.log``. The caller stops it
    with :func:`lab.netns.stop` on the returned record. RuntimeError with the
    log's tail if it does not start.
    """
    state_dir = Path(state_dir)
    found = re.search(r"^ListenAddress (\S+):(\d+)$", config_text, re.MULTILINE)
    if found is None:
        raise ValueError("the config needs 'ListenAddress a.b.c.d:port' (use sshd_config)")
    address, port = IPv4Address(found.group(1)), int(found.group(2))
    if not Path(SSHD).exists():
        raise RuntimeError(f"{SSHD} missing: apt-get install openssh-server (setup.sh)")
    # Debian's sshd insists on its privilege-separation directory, normally made by the service.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    conf = state_dir / "sshd_config"
    _write_private(conf, config_text.encode())
    check = subprocess.run([SSHD, "-t", "-f", str(conf)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"sshd -t refused the config: {check.stderr.strip()[:500]}")
    log = state_dir / "sshd.log"
    proc, record = ns.spawn(netns, [SSHD, "-D", "-e", "-f", str(conf)], "sshd", log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited ({proc.returncode}): {_tail(log)}")
        if _listens(netns, address, port):
            return proc, record
        time.sleep(0.05)
    ns.stop(record)
    raise RuntimeError(f"sshd did not listen on {address}:{port} within {START_TIMEOUT:.0f} s: {_tail(log)}")
