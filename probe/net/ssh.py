"""Read the café servers' log folders over SFTP, read-only, with the host key checked before any login.

Per source (a :class:`~probe.profile.LogSource`): read the password or key
file, connect (TCP with a timeout), run the SSH key exchange and compare the
server's host key with the pinned one BEFORE authenticating (a mismatch
stops the source: the key seen is recorded and no credential is sent);
authenticate; open the SFTP subsystem only (never a shell, never a command);
list each folder (recursively where asked) and read the first and last bytes
of files whose names carry no date; hand everything to
:func:`probe.logdates.analyse_folder`, the same analysis as offline mode.

Nothing is written, renamed or re-timed on the server: files are opened
with the read flag only. Listings and attributes are parsed here rather than
by paramiko's ``listdir_attr`` so that a hostile server cannot make the
probe loop or hold unbounded entries, and non-UTF-8 names (GBK on Chinese
servers) are kept byte-exact. A watchdog closes the connection at the
source's time limit, so no server can hold a run.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import socket
import stat
import threading
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

import paramiko
from paramiko.message import Message
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_HANDLE,
    CMD_LSTAT,
    CMD_NAME,
    CMD_OPENDIR,
    CMD_READDIR,
    SFTPError,
)

from probe.logdates import FileEntry, LineFormat, analyse_folder
from probe.observations import LogFolderRead, LogSourceRead
from probe.profile import LogPath, LogSource

__all__ = ["EDGE_BYTES", "MAX_FILES", "read_sources", "read_source"]

EDGE_BYTES = 4096
MAX_FILES = 50_000
MAX_SECRET = 16 * 1024     # a password or key file larger than this is not one
MAX_DIRS = 10_000          # folders visited per log path (recursive listings)
_GRACE = 1.0               # the watchdog fires this long after the analysis' own deadline

# The host key algorithms that prove a key of each pinned type (paramiko 5 has no SHA-1 RSA).
_ALGORITHMS = {
    "ssh-ed25519": ["ssh-ed25519"],
    "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256"],
    "ecdsa-sha2-nistp256": ["ecdsa-sha2-nistp256"],
    "ecdsa-sha2-nistp384": ["ecdsa-sha2-nistp384"],
    "ecdsa-sha2-nistp521": ["ecdsa-sha2-nistp521"],
}

# SFTP v3 attribute flags (draft-ietf-secsh-filexfer-02, 5).
_SIZE, _UIDGID, _PERMISSIONS, _ACMODTIME, _EXTENDED = 0x1, 0x2, 0x4, 0x8, 0x80000000


class _SourceFailed(Exception):
    """The source as a whole could not be read; ``error`` is a LogSourceRead error code."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


class _FolderFailed(Exception):
    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


# ---------------------------------------------------------------- credentials


def _read_secret(path) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SECRET + 1)
    except OSError as exc:
        raise _SourceFailed("credentials_unreadable", f"{path}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_SECRET:
        raise _SourceFailed("credentials_unreadable", f"{path}: larger than {MAX_SECRET} bytes")
    return data


def _credentials(source: LogSource) -> tuple[str | None, paramiko.PKey | None]:
    """(password, key) from the source's secret file; never put into an error message."""
    if source.password_file is not None:
        raw = _read_secret(source.password_file)
        # One trailing newline is how editors and `echo` write a password file; it is not part of it.
        text = raw.decode("utf-8", errors="strict").removesuffix("\n").removesuffix("\r") \
            if _is_utf8(raw) else None
        if not text:
            raise _SourceFailed("credentials_unreadable", f"{source.password_file}: empty or not UTF-8 text")
        return text, None
    _read_secret(source.key_file)  # the same size and readability checks as a password file
    try:
        key = paramiko.PKey.from_path(source.key_file)
    except paramiko.PasswordRequiredException:
        raise _SourceFailed("credentials_unreadable",
                            f"{source.key_file}: the key has a passphrase (not supported)") from None
    except (paramiko.SSHException, ValueError, TypeError, OSError, IndexError) as exc:
        raise _SourceFailed("credentials_unreadable",
                            f"{source.key_file}: not a usable private key ({type(exc).__name__})") from None
    return None, key


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ---------------------------------------------------------------- connection


def _connect(source: LogSource, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((str(source.address), source.port), timeout=timeout)
    except ConnectionRefusedError:
        raise _SourceFailed("refused", f"{source.address}:{source.port} refused the connection") from None
    except (socket.timeout, TimeoutError):
        raise _SourceFailed("timeout", f"no answer from {source.address}:{source.port} in {timeout:g} s") from None
    except OSError as exc:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.EADDRNOTAVAIL):
            raise _SourceFailed("unreachable", f"{source.address}: {exc.strerror}") from None
        raise _SourceFailed("unreachable", f"{source.address}:{source.port}: {exc.strerror or exc}") from None


def _pin(host_key: str | None) -> tuple[str, bytes] | None:
    if host_key is None:
        return None
    kind, blob = host_key.split()[:2]
    return kind, base64.b64decode(blob)


def _transport(sock: socket.socket, pin: tuple[str, bytes] | None, timeout: float) -> paramiko.Transport:
    transport = paramiko.Transport(sock)
    # paramiko's own limits a little longer than ours, so that our wait decides and says "timeout".
    transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout + 1.0
    if pin is not None and pin[0] in _ALGORITHMS:
        # Ask for the pinned type first: a server with several host keys then shows that one,
        # and a server without it shows another, which is a mismatch as it should be.
        preferred = _ALGORITHMS[pin[0]]
        options = transport.get_security_options()
        options.key_types = preferred + [k for k in options.key_types if k not in preferred]
    return transport


def _handshake(transport: paramiko.Transport, timeout: float) -> None:
    """The key exchange (which proves the server holds the host key it shows); no authentication."""
    done = threading.Event()
    try:
        # With an event, start_client returns at once; waiting here gives a real time limit
        # (without one, paramiko's own timeout returns silently with no session).
        transport.start_client(event=done)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise _SourceFailed("protocol", f"SSH handshake failed: {_short(exc)}") from None
    if not done.wait(timeout):
        raise _SourceFailed("timeout", f"no SSH handshake within {timeout:g} s")
    if not transport.is_active():
        exc = transport.get_exception()
        # paramiko wraps a banner timeout in SSHException; the timeout is its context.
        if any(isinstance(e, (socket.timeout, TimeoutError)) for e in (exc, getattr(exc, "__context__", None))):
            raise _SourceFailed("timeout", f"no SSH banner within {timeout:g} s")
        raise _SourceFailed("protocol", f"SSH handshake failed: {_short(exc) if exc else 'closed'}")


def _short(exc: BaseException) -> str:
    # Server-controlled text (banners, disconnect reasons) is cut and made printable.
    text = f"{type(exc).__name__}: {exc}"[:200]
    return "".join(c if c.isprintable() else "?" for c in text)


def _authenticate(transport: paramiko.Transport, source: LogSource,
                  credentials: tuple[str | None, paramiko.PKey | None]) -> None:
    password, key = credentials
    try:
        if key is not None:
            transport.auth_publickey(source.username, key)
        else:
            transport.auth_password(source.username, password, fallback=False)
    except paramiko.AuthenticationException:
        raise _SourceFailed("auth", f"the server refused the {'key' if key else 'password'} "
                                    f"for user {source.username!r}") from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise _SourceFailed("protocol", f"authentication did not complete: {_short(exc)}") from None
    if not transport.is_authenticated():
        raise _SourceFailed("auth", f"not authenticated as {source.username!r}")


# ---------------------------------------------------------------- SFTP, bounded


def _left(msg: Message) -> int:
    buf = msg.packet
    return len(buf.getbuffer()) - buf.tell()


def _attrs(msg: Message) -> tuple[int | None, int, int] | None:
    """(mode, size, mtime) of an SFTP v3 ATTRS; None when malformed or carrying extensions."""
    if _left(msg) < 4:
        return None
    flags = msg.get_int()
    size = msg.get_int64() if flags & _SIZE else 0
    if flags & _UIDGID:
        msg.get_int(), msg.get_int()
    mode = msg.get_int() if flags & _PERMISSIONS else None
    mtime = 0
    if flags & _ACMODTIME:
        msg.get_int()
        mtime = msg.get_int()
    if flags & _EXTENDED:
        return None  # no server we read sends them; a count there could make us loop
    return mode, size, mtime


def _stat(sftp: paramiko.SFTPClient, path: bytes) -> tuple[int | None, int, int]:
    # LSTAT on the folder itself: a link as a configured path is still not followed.
    kind, msg = sftp._request(CMD_LSTAT, path)
    attrs = _attrs(msg) if kind == CMD_ATTRS else None
    if attrs is None:
        raise _FolderFailed("io", "malformed attributes from the server")
    return attrs


def _readdir(sftp: paramiko.SFTPClient, path: bytes, limit: int,
             deadline: float) -> tuple[list[tuple[bytes, int | None, int, int]], bool]:
    """Entries of one directory (name, mode, size, mtime), at most ``limit``; (entries, stopped early)."""
    kind, msg = sftp._request(CMD_OPENDIR, path)
    if kind != CMD_HANDLE:
        raise _FolderFailed("io", "the server did not open the folder")
    handle = msg.get_binary()
    out: list[tuple[bytes, int | None, int, int]] = []
    try:
        while True:
            if time.monotonic() > deadline:
                return out, True
            try:
                kind, msg = sftp._request(CMD_READDIR, handle)
            except EOFError:  # paramiko's way of saying SSH_FX_EOF: the folder is done
                return out, False
            if kind != CMD_NAME:
                raise _FolderFailed("io", "unexpected answer to READDIR")
            count = msg.get_int()
            for _ in range(count):
                if _left(msg) < 12:
                    break  # the count promised more than the packet holds
                name = msg.get_string()
                msg.get_string()  # longname: ls-style text, not needed
                attrs = _attrs(msg)
                if attrs is None:
                    raise _FolderFailed("io", "malformed or extended attributes in a listing")
                if name in (b".", b"..") or not name or b"/" in name or b"\x00" in name:
                    continue
                out.append((name, *attrs))
                if len(out) > limit:
                    return out, True
    finally:
        try:
            sftp._request(CMD_CLOSE, handle)
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the connection is going away; the server frees the handle with it


def _decode(name: bytes) -> str:
    # Byte-exact round trip: the canonical listing and the later open see the server's bytes.
    return name.decode("utf-8", "surrogateescape")


def _list(sftp: paramiko.SFTPClient, root: bytes, recursive: bool, limit: int,
          deadline: float) -> tuple[list[FileEntry], bool]:
    """Regular files under ``root`` (symlinks never followed); (entries, stopped early)."""
    entries: list[FileEntry] = []
    pending: list[tuple[bytes, str]] = [(root, "")]
    visited = 0
    while pending:
        folder, prefix = pending.pop()
        visited += 1
        if visited > MAX_DIRS:
            return entries, True
        items, stopped = _readdir(sftp, folder, limit - len(entries), deadline)
        for name, mode, size, mtime in items:
            rel = prefix + _decode(name)
            if mode is not None and stat.S_ISDIR(mode):
                if recursive:
                    pending.append((folder.rstrip(b"/") + b"/" + name, rel + "/"))
            elif mode is not None and stat.S_ISREG(mode):
                entries.append(FileEntry(rel, size, mtime))
        if stopped or len(entries) > limit:
            return entries, True
    return entries, False


def _edges_reader(sftp: paramiko.SFTPClient, base: bytes, sizes: dict[str, int],
                  edge_bytes: int) -> Callable[[str], tuple[bytes, bytes]]:
    def read_edges(rel: str) -> tuple[bytes, bytes]:
        path = base + rel.encode("utf-8", "surrogateescape") if rel else base
        # Mode "r" only (SSH_FXF_READ); bufsize 0 so exactly the bytes asked for are requested.
        with sftp.open(path, "r", bufsize=0) as handle:
            head = handle.read(edge_bytes)
            size = sizes.get(rel, 0)
            if size <= edge_bytes or len(head) < edge_bytes:
                return head, b""
            handle.seek(size - edge_bytes)
            return head, handle.read(edge_bytes)

    return read_edges


def _candidates(path: str) -> list[str]:
    """The path as given, then as OpenSSH for Windows shows a drive path ('C:/logs' -> '/C:/logs')."""
    unix = path.replace("\\", "/") if len(path) >= 2 and path[1] == ":" else path
    tries = [path] if unix == path else [path, unix]
    if len(unix) >= 3 and unix[0].isalpha() and unix[1] == ":" and unix[2] == "/":
        tries.append("/" + unix)
    return list(dict.fromkeys(tries))


def _resolve(sftp: paramiko.SFTPClient, path: str) -> tuple[bytes, tuple[int | None, int, int]]:
    first: _FolderFailed | None = None
    for candidate in _candidates(path):
        raw = candidate.encode("utf-8")
        try:
            return raw, _stat(sftp, raw)
        except FileNotFoundError:
            failure = _FolderFailed("missing", f"{candidate}: no such file or folder")
        except PermissionError:
            failure = _FolderFailed("permission", f"{candidate}: permission denied")
        except (OSError, SFTPError) as exc:
            failure = _FolderFailed("io", f"{candidate}: {_short(exc)}")
        first = first or failure
    raise first or _FolderFailed("missing", path)


def _lost(exc: BaseException, deadline: float) -> dict:
    """A folder's error fields when the connection failed under it (the watchdog, or the server)."""
    if time.monotonic() > deadline:
        return {"error": "timeout", "error_detail": "the source's time limit was reached in this folder"}
    return {"error": "io", "error_detail": _short(exc)}


def _read_folder(sftp: paramiko.SFTPClient, spec: LogPath, formats: list[LineFormat], tz: ZoneInfo,
                 deadline: float) -> LogFolderRead:
    failed = LogFolderRead(path=spec.path, name_pattern=spec.name_pattern, recursive=spec.recursive, ok=False)
    try:
        root, (mode, size, mtime) = _resolve(sftp, spec.path)
        if mode is not None and stat.S_ISREG(mode):
            name = _decode(root.rsplit(b"/", 1)[-1])
            entries, stopped = [FileEntry(name, size, mtime)], False
            reader = _edges_reader(sftp, root, {"": size}, EDGE_BYTES)
            read_edges = lambda _rel: reader("")  # noqa: E731 - the one file is the path itself
        elif mode is not None and stat.S_ISDIR(mode):
            entries, stopped = _list(sftp, root, spec.recursive, MAX_FILES, deadline)
            base = root.rstrip(b"/") + b"/"
            sizes = {e.path: e.size for e in entries}
            read_edges = _edges_reader(sftp, base, sizes, EDGE_BYTES)
        else:
            raise _FolderFailed("not_a_folder", f"{spec.path}: neither a folder nor a regular file")
    except _FolderFailed as exc:
        return failed.model_copy(update={"error": exc.error, "error_detail": exc.detail})
    except PermissionError as exc:
        return failed.model_copy(update={"error": "permission", "error_detail": _short(exc)})
    except (OSError, SFTPError, EOFError, paramiko.SSHException) as exc:
        return failed.model_copy(update=_lost(exc, deadline))
    try:
        result = analyse_folder(entries, spec, read_edges, formats, tz, edge_bytes=EDGE_BYTES,
                                max_files=MAX_FILES, deadline=deadline)
    except (SFTPError, EOFError, paramiko.SSHException) as exc:
        return failed.model_copy(update=_lost(exc, deadline))
    if stopped and result.error is None:
        detail = ("time limit reached while listing" if time.monotonic() > deadline
                  else f"listing stopped at {len(entries)} files or {MAX_DIRS} folders")
        code = "timeout" if time.monotonic() > deadline else "too_many"
        result = result.model_copy(update={"ok": False, "error": code, "error_detail": detail})
    return result


# ---------------------------------------------------------------- sources


def _host_key_seen(transport: paramiko.Transport) -> tuple[str, bytes]:
    key = transport.get_remote_server_key()
    return key.get_name(), key.asbytes()


def _watchdog(transport: paramiko.Transport, deadline: float, cancel: threading.Event | None) -> threading.Event:
    """Close ``transport`` at ``deadline`` (monotonic) or as soon as ``cancel`` is set; set the result to stand down."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            if time.monotonic() > deadline or (cancel is not None and cancel.is_set()):
                transport.close()  # every blocked read on it ends with EOFError or OSError
                return

    threading.Thread(target=watch, name="sftp-watchdog", daemon=True).start()
    return done


def _read(source: LogSource, seen: dict, formats: list[LineFormat], tz: ZoneInfo,
          connect_timeout: float, deadline: float, cancel: threading.Event | None = None) -> list[LogFolderRead]:
    """The folders of one source; ``seen`` gets host_key_seen / host_key_pinned as soon as they are known,
    so that a later failure (auth, timeout) still reports them. _SourceFailed for source-level failures."""
    pin = _pin(source.host_key)
    credentials = _credentials(source)  # unreadable credentials stop the source before any packet is sent
    remaining = max(0.1, deadline - time.monotonic())
    step = min(connect_timeout, remaining)
    sock = _connect(source, step)
    try:
        transport = _transport(sock, pin, step)
    except BaseException:
        sock.close()
        raise
    # The watchdog bounds everything from the handshake on, whatever the server does.
    watchdog = _watchdog(transport, deadline + _GRACE, cancel)
    try:
        _handshake(transport, step)
        kind, blob = _host_key_seen(transport)
        seen["host_key_seen"] = f"{kind} {base64.b64encode(blob).decode()}"
        if pin is not None and (kind, blob) != pin:
            raise _SourceFailed("host_key_mismatch",
                                f"the server showed {kind} key SHA256:{_fingerprint(blob)}, not the pinned "
                                f"{pin[0]} key SHA256:{_fingerprint(pin[1])}; not logged in")
        seen["host_key_pinned"] = pin is not None
        _authenticate(transport, source, credentials)
        credentials = None  # the secret is not kept past the login
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _SourceFailed("protocol", f"the server offers no SFTP: {_short(exc)}") from None
        if sftp is None:
            raise _SourceFailed("protocol", "the server offers no SFTP")
        sftp.get_channel().settimeout(max(1.0, deadline - time.monotonic() + _GRACE))
        folders = []
        for spec in source.paths:
            if time.monotonic() > deadline:
                folders.append(LogFolderRead(path=spec.path, name_pattern=spec.name_pattern,
                                             recursive=spec.recursive, ok=False, error="timeout",
                                             error_detail="not read: the source's time limit was reached"))
                continue
            folders.append(_read_folder(sftp, spec, formats, tz, deadline))
        return folders
    except (EOFError, paramiko.SSHException, OSError) as exc:
        # Typically the watchdog closing the connection, or the server dropping it.
        if time.monotonic() > deadline:
            raise _SourceFailed("timeout", "the source's time limit was reached") from None
        if cancel is not None and cancel.is_set():
            raise _SourceFailed("cancelled", "the run was stopped while this source was read") from None
        raise _SourceFailed("protocol", f"connection lost: {_short(exc)}") from None
    finally:
        watchdog.set()
        transport.close()


def _fingerprint(blob: bytes) -> str:
    return base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def read_source(source: LogSource, *, formats: list[LineFormat], tz: ZoneInfo, connect_timeout: float = 5.0,
                source_timeout: float = 60.0, cancel: threading.Event | None = None) -> LogSourceRead:
    """One log source over SFTP (see the module docstring); never raises for anything the server does.

    Setting ``cancel`` (the run is over: its cable was pulled) closes the connection at once.
    """
    started = time.monotonic()
    seen: dict = {}
    outcome: dict = {"ok": False}
    try:
        outcome = {"ok": True, "folders": _read(source, seen, formats, tz, connect_timeout,
                                                started + source_timeout, cancel)}
    except _SourceFailed as exc:
        outcome = {"ok": False, "error": exc.error, "error_detail": exc.detail}
    except (binascii.Error, ValueError) as exc:  # a pin the profile validator let through; be explicit
        outcome = {"ok": False, "error": "protocol", "error_detail": _short(exc)}
    return LogSourceRead(address=source.address, port=source.port, username=source.username, **seen,
                         **outcome, seconds=round(time.monotonic() - started, 3))


def read_sources(sources: list[LogSource], *, formats: list[LineFormat], tz: ZoneInfo,
                 connect_timeout: float = 5.0, source_timeout: float = 60.0,
                 cancel: threading.Event | None = None) -> list[LogSourceRead]:
    """Every log source of the profile in order, each bounded by ``source_timeout`` seconds.

    Per source: ok False with error host_key_mismatch (key seen recorded, no
    login attempted), auth, refused, timeout, unreachable, protocol or
    credentials_unreadable; otherwise ok True with one LogFolderRead per
    profile path (a missing folder is that folder's error, not the source's).
    Secrets are never printed, logged or stored. Once ``cancel`` is set the
    source being read is closed and no further source is contacted.
    """
    reads = []
    for source in sources:
        if cancel is not None and cancel.is_set():
            break
        reads.append(read_source(source, formats=formats, tz=tz, connect_timeout=connect_timeout,
                                 source_timeout=source_timeout, cancel=cancel))
    return reads
