"""Service signatures: how a billing server, an audit server, a real-name client or an NVR shows on the LAN.

Signatures are data: the shipped ones live in ``rules/signatures/*.yaml``
(covered by the ruleset's SHA-256), and a venue profile may add its own or
replace a shipped one by id (``servers.signatures``), because the network
behaviour of café products is not publicly documented (LEGAL.md "Café
software"): a technician confirms it on site. Each signature says whether
its details are confirmed and where they came from.

A signature names its role, the ports it listens on, an optional probe
payload sent once connected (TCP) or as the datagram (UDP), and a regular
expression searched in the answer (decoded as Latin-1, so every byte is one
character). Without ``match``, an open port alone counts, which is weak
evidence and should carry a low confidence.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["Role", "SERVER_ROLES", "Signature", "SignatureError", "load_signature_files", "effective_signatures",
           "signatures_sha256", "MAX_ANSWER"]

Role = Literal["billing", "audit", "realname_client", "diskless", "database", "nvr", "camera"]
SERVER_ROLES: tuple[Role, ...] = ("billing", "audit", "diskless", "database", "nvr")
"""Roles that make a host one of the venue's servers (SERVER-COUNT)."""

MAX_ANSWER = 4096  # bytes of an answer a signature is matched against (the collector reads no more)
MAX_PROBE = 1024


class SignatureError(Exception):
    """A signature file that cannot be used; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


Port = Annotated[int, Field(strict=True, ge=1, le=65535)]


class Signature(BaseModel):
    """One way a product shows on the network."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    role: Role
    product: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="the product key a profile's servers.billing/audit entry uses")
    transport: Literal["tcp", "udp"] = "tcp"
    ports: Annotated[list[Port], Field(min_length=1, max_length=32)]
    probe: Annotated[str, Field(max_length=MAX_PROBE)] | None = Field(
        default=None, description="text sent after connecting (TCP) or as the datagram (UDP), UTF-8")
    probe_hex: Annotated[str, Field(max_length=2 * MAX_PROBE, pattern=r"^([0-9a-fA-F]{2})*$")] | None = None
    match: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        default=None, description="regular expression searched in the answer decoded as Latin-1")
    confidence: Annotated[float, Field(ge=0, le=1)]
    confirmed: bool = Field(description="details confirmed by public documentation or on site")
    source: Annotated[str, Field(min_length=1, max_length=500)]

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"match is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_probe(self) -> "Signature":
        if self.probe is not None and self.probe_hex is not None:
            raise ValueError("give probe or probe_hex, not both")
        if self.transport == "udp" and self.payload is None:
            raise ValueError("a UDP signature needs a probe payload (a silent UDP port tells nothing)")
        return self

    @property
    def payload(self) -> bytes | None:
        """The bytes to send, if any."""
        if self.probe_hex is not None:
            return bytes.fromhex(self.probe_hex)
        return self.probe.encode("utf-8") if self.probe is not None else None

    @cached_property
    def _regex(self) -> re.Pattern[str] | None:
        return re.compile(self.match, re.DOTALL) if self.match is not None else None

    def matches(self, answer: bytes | None) -> bool:
        """Whether an answer (None: the port was open but said nothing) fits this signature."""
        if self._regex is None:
            return True
        if not answer:
            return False
        return self._regex.search(answer[:MAX_ANSWER].decode("latin-1")) is not None


def load_signature_files(directory: Path) -> list[Signature]:
    """Every signature of ``directory/*.yaml`` (``{signatures: [...]}``), ids unique; SignatureError otherwise."""
    found: list[Signature] = []
    problems: list[str] = []
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeError, yaml.YAMLError) as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        if not isinstance(data, dict) or set(data) != {"signatures"} or not isinstance(data["signatures"], list):
            problems.append(f"{path.name}: must hold exactly one key, signatures: a list")
            continue
        # One entry at a time, so a bad entry does not hide the good ones (and their duplicate ids).
        for i, entry in enumerate(data["signatures"]):
            try:
                found.append(Signature.model_validate(entry))
            except ValidationError as exc:
                problems.extend(f"{path.name}: signatures[{i}]{''.join(f'.{p}' for p in e['loc'])}: {e['msg']}"
                                for e in exc.errors())
    seen: set[str] = set()
    for sig in found:
        if sig.id in seen:
            problems.append(f"signature id {sig.id} is defined twice")
        seen.add(sig.id)
    if problems:
        raise SignatureError(problems)
    return found


def effective_signatures(shipped: list[Signature], venue: list[Signature]) -> list[Signature]:
    """The shipped signatures with the venue profile's added, a venue one replacing a shipped one of its id."""
    merged = {s.id: s for s in shipped}
    merged.update({s.id: s for s in venue})
    return sorted(merged.values(), key=lambda s: s.id)


def signatures_sha256(signatures: list[Signature]) -> str:
    """SHA-256 of the canonical JSON of a signature set: names exactly what a scan matched against."""
    canonical = json.dumps([s.model_dump(mode="json") for s in sorted(signatures, key=lambda s: s.id)],
                           ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
