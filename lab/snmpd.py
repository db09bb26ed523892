"""The lab's SNMP agent: Debian's real net-snmp ``snmpd`` in a lab namespace, read-only.

The agent reads only the configuration written here (``-C -c``), keeps its
persistent state (engine ID, localised v3 keys) in the lab's own state
directory, and listens on one UDP socket, the lab address it is given:
no AgentX master, no SMUX, nothing on the host's ``/etc/snmp`` or
``/var/lib/snmp``.
"""

from __future__ import annotations

import os
import subprocess
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from lab import netns as ns

__all__ = ["SNMPD", "LAB_MANAGERS", "snmpd_config", "start_snmpd"]

SNMPD = "/usr/sbin/snmpd"
# Who may read with the v2c community: the café LANs of the lab, where the probe sits.
LAB_MANAGERS = (IPv4Network("198.18.0.0/15"),)
START_TIMEOUT = 5.0

# Characters net-snmp's config tokenizer would split on or treat as a comment.
_UNSAFE = set(" \t\r\n\"'#\\")


def _token(value: str, what: str, min_len: int = 1) -> str:
    """A value safe to write as one snmpd.conf token, or ValueError (never a mangled config)."""
    if not isinstance(value, str) or len(value) < min_len or len(value) > 64:
        raise ValueError(f"{what}: must be {min_len}–64 characters")
    if not value.isprintable() or not value.isascii() or _UNSAFE & set(value):
        raise ValueError(f"{what}: only printable ASCII without spaces, quotes, '#' or '\\'")
    return value


def snmpd_config(listen: IPv4Address, community: str, v3_user: str, auth_pass: str, priv_pass: str,
                 *, sys_name: str = "lab-router") -> str:
    """snmpd.conf for the lab agent: a v2c read-only community limited to the lab's café LANs,
    a v3 user with SHA authentication and AES privacy (``rouser … priv``), one view of the whole
    tree, and no write access of any kind (no rw* lines, system group fixed by the config)."""
    listen = IPv4Address(listen)
    community = _token(community, "community")
    v3_user = _token(v3_user, "v3 user")
    # RFC 3414 §11.2: pass phrases shorter than 8 characters are refused by net-snmp.
    auth_pass = _token(auth_pass, "auth pass phrase", 8)
    priv_pass = _token(priv_pass, "priv pass phrase", 8)
    sys_name = _token(sys_name, "sysName")
    lines = [
        "# cafe-probe lab agent (generated; read-only)",
        f"agentAddress udp:{listen}:161",
        "view all included .1",
        # Quoted: a value may start with '-' (token_urlsafe), which unquoted would read as an option.
        *(f'rocommunity "{community}" {net} -V all' for net in LAB_MANAGERS),
        # Only the persistent file would normally hold createUser; the lab's persistent dir is
        # private to this run, so the pass phrases sit in this 0600 file for its lifetime.
        f'createUser "{v3_user}" SHA "{auth_pass}" AES "{priv_pass}"',
        f'rouser -s usm "{v3_user}" priv -V all',
        # Set in the config, these objects become read-only and stop leaking the host's name.
        f"sysName {sys_name}",
        "sysLocation cafe-probe lab",
        "sysContact lab@example.invalid",
        "sysServices 76",
        "",
    ]
    return "\n".join(lines)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file of the same name may have had a wider mode
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _listening(pid: int, listen: IPv4Address) -> bool:
    """Whether the process's own network namespace has a UDP socket bound to listen:161."""
    # /proc/<pid>/net shows the namespace of that process, not ours; addresses are little-endian hex.
    want = f"{int.from_bytes(listen.packed, 'little'):08X}:00A1"
    try:
        table = Path(f"/proc/{pid}/net/udp").read_text()
    except OSError:
        return False
    return any(line.split()[1] == want for line in table.splitlines()[1:] if len(line.split()) > 1)


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def start_snmpd(netns: str, state_dir: Path, config: str,
                listen: IPv4Address) -> tuple[subprocess.Popen, ns.ProcRecord]:
    """Start ``/usr/sbin/snmpd`` in ``netns`` with ``config`` and wait until it listens on
    ``listen``:161. Files go to ``state_dir`` (config 0600, log, persistent dir). The caller
    stops it with :func:`lab.netns.stop` on the returned record. RuntimeError with the log's
    tail if it dies or never listens."""
    listen = IPv4Address(listen)
    state_dir = Path(state_dir)
    persist = state_dir / "snmpd-persist"
    persist.mkdir(mode=0o700, parents=True, exist_ok=True)
    conf = state_dir / "snmpd.conf"
    _write_private(conf, config)
    log = state_dir / "snmpd.log"
    # The address comes from the config's agentAddress alone: given here too, snmpd binds it twice and dies.
    argv = [SNMPD, "-f", "-C", "-c", str(conf), "-Lf", str(log),
            # SMUX would listen on TCP 199; AgentX stays off because the config has no "master agentx".
            "-I", "-smux"]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SNMP_PERSISTENT_DIR": str(persist),
           "SNMPCONFPATH": str(state_dir), "MIBS": "", "MIBDIRS": str(state_dir)}
    proc, record = ns.spawn(netns, argv, "snmpd", state_dir / "snmpd.out", env=env)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"snmpd exited ({proc.returncode}): {_tail(log)} {_tail(state_dir / 'snmpd.out')}")
        if _listening(proc.pid, listen):
            return proc, record
        time.sleep(0.02)
    ns.stop(record)
    raise RuntimeError(f"snmpd did not listen on {listen}:161 within {START_TIMEOUT:.0f} s: {_tail(log)}")
