"""DSSE envelopes (Dead Simple Signing Envelope, v1) signed with Ed25519.

The signature covers the pre-authentication encoding (PAE) of the payload
type and the exact payload bytes, so a verifier never re-serialises anything:
it checks the bytes it was given and hands on those same bytes. PyPI's
``dsse`` package is an unrelated project; the PAE is a few lines and is
tested against the specification's vector.

Spec: https://github.com/secure-systems-lab/dsse/blob/master/protocol.md
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from probe.keys import key_id

__all__ = ["EnvelopeError", "Verified", "pae", "sign_envelope", "verify_envelope", "MAX_ENVELOPE_BYTES"]

# A report with every evidence digest and a thousand terminals' findings is a
# few hundred KiB; anything far beyond that is not one of ours.
MAX_ENVELOPE_BYTES = 8 * 1024 * 1024


class EnvelopeError(ValueError):
    """The envelope is malformed or its signature does not verify; the message is one line."""


@dataclass(frozen=True)
class Verified:
    """A verified envelope: the exact payload bytes that were signed, and by which key."""

    payload_type: str
    payload: bytes
    key_id: str


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSEv1 pre-authentication encoding: ``"DSSEv1" SP len(type) SP type SP len(body) SP body``."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _b64encode(data: bytes) -> str:
    return base64.standard_b64encode(data).decode("ascii")


def _b64decode(text: Any, what: str) -> bytes:
    """Standard or URL-safe base64 (the spec allows either), strictly decoded."""
    if not isinstance(text, str):
        raise EnvelopeError(f"{what} 不是字符串 / {what} is not a string")
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"{what} 不是有效的 base64 / {what} is not valid base64") from None


def sign_envelope(payload_type: str, payload: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """Sign ``payload`` and return the envelope as UTF-8 JSON bytes (one signature, keyid = key id)."""
    signature = private_key.sign(pae(payload_type, payload))
    envelope = {
        "payloadType": payload_type,
        "payload": _b64encode(payload),
        "signatures": [{"keyid": key_id(private_key.public_key()), "sig": _b64encode(signature)}],
    }
    return json.dumps(envelope, indent=1).encode("utf-8") + b"\n"


def parse_envelope(data: bytes) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """Split envelope bytes into (payload type, payload, [(keyid, signature)]) without verifying."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"信封过大 / envelope larger than {MAX_ENVELOPE_BYTES // (1024 * 1024)} MiB")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"不是有效的 JSON / not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EnvelopeError("信封必须是 JSON 对象 / the envelope must be a JSON object")
    missing = [k for k in ("payloadType", "payload", "signatures") if k not in doc]
    if missing:
        raise EnvelopeError(f"信封缺少字段 / envelope lacks {', '.join(missing)}")
    payload_type = doc["payloadType"]
    if not isinstance(payload_type, str):
        raise EnvelopeError("payloadType 不是字符串 / payloadType is not a string")
    payload = _b64decode(doc["payload"], "payload")
    sigs = doc["signatures"]
    if not isinstance(sigs, list) or not sigs or len(sigs) > 8:
        raise EnvelopeError("signatures 须为 1–8 项的列表 / signatures must be a list of 1–8 entries")
    parsed = []
    for entry in sigs:
        if not isinstance(entry, dict) or "sig" not in entry:
            raise EnvelopeError("签名项格式错误 / malformed signature entry")
        keyid = entry.get("keyid", "")
        if not isinstance(keyid, str):
            raise EnvelopeError("keyid 不是字符串 / keyid is not a string")
        parsed.append((keyid, _b64decode(entry["sig"], "sig")))
    return payload_type, payload, parsed


def verify_envelope(data: bytes, keys: dict[str, Ed25519PublicKey], payload_type: str) -> Verified:
    """Verify envelope bytes against trusted keys (key id → key) and the expected payload type.

    Returns the signed payload bytes; raises :class:`EnvelopeError` with one
    line naming the first problem. A signature by a key outside ``keys`` never
    counts, whatever its keyid claims.
    """
    got_type, payload, signatures = parse_envelope(data)
    if got_type != payload_type:
        raise EnvelopeError(f"载荷类型不符 / wrong payload type {got_type!r}, expected {payload_type!r}")
    message = pae(got_type, payload)
    known = [(kid, sig) for kid, sig in signatures if kid in keys]
    if not known:
        kids = ", ".join(kid[:16] or "(none)" for kid, _ in signatures)
        raise EnvelopeError(f"签名密钥未登记 / signed by an unknown key ({kids})")
    for kid, sig in known:
        try:
            keys[kid].verify(sig, message)
        except InvalidSignature:
            continue
        return Verified(payload_type=got_type, payload=payload, key_id=kid)
    raise EnvelopeError("签名无效：载荷或签名已被改动 / invalid signature: the payload or signature was altered")
