"""Ed25519 key pairs for probes and the inspector device.

A private key is a PKCS#8 PEM file of mode 0600, created with that mode (never
widened and then narrowed), and is never printed. A public key is a PEM file
or the one-line form ``ed25519:<base64url of the 32 raw bytes>`` (short enough
for a QR code). The key id is the SHA-256 (hex) of the raw public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["KeyFileError", "key_id", "raw_public", "public_line", "parse_public_key", "load_public_key",
           "load_private_key", "generate_key_files", "write_secret_file", "check_secret_mode"]

LINE_PREFIX = "ed25519:"


class KeyFileError(ValueError):
    """A key file is missing, malformed or too open; the message is one line."""


def raw_public(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw public key."""
    return hashlib.sha256(raw_public(key)).hexdigest()


def public_line(key: Ed25519PublicKey) -> str:
    """The one-line form ``ed25519:<base64url>`` of a public key."""
    return LINE_PREFIX + base64.urlsafe_b64encode(raw_public(key)).decode("ascii").rstrip("=")


def parse_public_key(text: str | bytes) -> Ed25519PublicKey:
    """A public key from PEM text or the one-line form; raises KeyFileError on anything else."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise KeyFileError("公钥不是文本 / public key is not text") from None
    text = text.strip()
    if text.startswith(LINE_PREFIX):
        body = text[len(LINE_PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise KeyFileError("公钥 base64 无效 / public key: invalid base64") from None
        if len(raw) != 32:
            raise KeyFileError(f"Ed25519 公钥应为 32 字节 / Ed25519 public key must be 32 bytes, got {len(raw)}")
        return Ed25519PublicKey.from_public_bytes(raw)
    if text.startswith("-----BEGIN PUBLIC KEY-----"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except ValueError:
            raise KeyFileError("公钥 PEM 无效 / public key: invalid PEM") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError("不是 Ed25519 公钥 / not an Ed25519 public key")
        return key
    raise KeyFileError("无法识别的公钥格式（需 PEM 或 ed25519:…）/ unrecognised public key (PEM or ed25519:… expected)")


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a public key file (PEM or one line)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"无法读取公钥 / cannot read public key {path}: {exc.strerror}") from None
    if len(data) > 4096:
        raise KeyFileError(f"{path}: 文件过大，不是公钥 / file too large for a public key")
    try:
        return parse_public_key(data)
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


def check_secret_mode(path: Path) -> None:
    """Refuse a secret file that group or others can read or write."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyFileError(f"无法读取 / cannot read {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} 权限过宽 ({stat.S_IMODE(mode):04o})，应为 0600 / too open, must be mode 0600 "
                        f"(chmod 600 {path})")


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a private key file; it must be mode 0600 (or stricter)."""
    check_secret_mode(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"无法读取私钥 / cannot read private key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path}: 私钥 PEM 无效 / not a valid unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: 不是 Ed25519 私钥 / not an Ed25519 private key")
    return key


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the first byte on; refuse to overwrite."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def generate_key_files(private_path: Path, public_path: Path) -> Ed25519PublicKey:
    """Make a key pair: private PEM (0600) and public PEM. Refuses to overwrite either file."""
    for p in (private_path, public_path):
        if p.exists():
            raise KeyFileError(f"{p} 已存在，不覆盖 / already exists; not overwritten")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_secret_file(private_path, pem)
    public = key.public_key()
    public_path.write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    return public
