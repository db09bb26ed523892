"""Building real task packs in tests: real keys, a lab profile with its secret files, the department's signature.

``make_pack`` plays the department server's part with probe.taskpack's own
functions (sign_pack, seal_secrets, profile_secret_files), so a pack made here
is what the department exports; ``lab_profile`` stages a lab scenario's
profile with fresh secret files (0600), as a technician would.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.scenario import load_scenario, stage_profile
from probe.home import ProbeHome
from probe.keys import key_id, parse_public_key, public_line
from probe.profile import load_profile
from probe.rules import load_ruleset
from probe.taskpack import (PackAgent, PackIssuer, PackPayload, PackProbe, PackRuleset, PackTask, PackVenue,
                            profile_secret_files, seal_secrets, sign_pack)

DEPARTMENT_NAME = "测试市文化市场综合执法支队 / test enforcement department"


def lab_profile(tmp: Path, scenario: str) -> tuple[Path, dict[str, str]]:
    """A copy of lab scenario ``scenario``'s profile under ``tmp/<scenario>/`` with fresh 0600 secrets.

    Returns the profile's path and the secret values written (to look for them on disk).
    """
    dest = tmp / scenario
    dest.mkdir(parents=True, exist_ok=True)
    return stage_profile(load_scenario(scenario), dest)


def new_agent_key_line() -> str:
    """A fresh inspector-device key's ``ed25519:…`` line."""
    return public_line(Ed25519PrivateKey.generate().public_key())


def make_pack(tmp: Path, probe_home: Path | ProbeHome, venues: Sequence[tuple[Path, Sequence[str]]],
              agent_url: str, agent_key_line: str, department_key: Ed25519PrivateKey | None = None,
              not_before: datetime | None = None, not_after: datetime | None = None, probe_id: str | None = None,
              *, task_id: str = "TASK-2024-0001", ruleset_version: str | None = None,
              pack_id: str | None = None) -> tuple[bytes, Ed25519PrivateKey]:
    """A signed task pack for the probe of ``probe_home``: ``(envelope bytes, department private key)``.

    ``venues`` are ``(profile path, inspector badges)``; each profile's secret
    files are sealed to the probe's key. The window defaults to an hour ago
    until a day ahead. ``probe_id`` addresses the pack to another probe id
    (sealed to this probe's key all the same); ``ruleset_version`` claims
    another ruleset. The department's public key is written to
    ``tmp/department.pub`` for pinning.
    """
    home = probe_home if isinstance(probe_home, ProbeHome) else ProbeHome(Path(probe_home))
    ident = home.identity()
    department_key = department_key or Ed25519PrivateKey.generate()
    now = datetime.now(timezone.utc)
    rules = load_ruleset()
    agent_key = parse_public_key(agent_key_line)
    pack_venues = []
    for profile_path, badges in venues:
        profile = load_profile(profile_path)
        text = Path(profile_path).read_text(encoding="utf-8")
        files = profile_secret_files(profile, Path(profile_path).parent)
        pack_venues.append(PackVenue(
            venue_id=profile.venue.id, name=profile.venue.name, credit_code=profile.venue.credit_code or "",
            inspectors=list(badges), profile_yaml=text,
            profile_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), secret_paths=sorted(files),
            secrets_sealed=seal_secrets(files, ident.public_key) if files else None))
    payload = PackPayload(
        pack_id=pack_id or PackPayload.new_id(), issued_at=now,
        not_before=not_before or now - timedelta(hours=1), not_after=not_after or now + timedelta(days=1),
        issuer=PackIssuer(name=DEPARTMENT_NAME, key_id=key_id(department_key.public_key())),
        probe=PackProbe(id=probe_id or ident.probe_id, key_id=ident.key_id),
        task=PackTask(id=task_id, name="双随机抽查 / random inspection round", check_type="random"),
        agent=PackAgent(url=agent_url, public_key=agent_key_line, key_id=key_id(agent_key)),
        ruleset=PackRuleset(version=ruleset_version or rules.version, sha256=rules.sha256),
        venues=pack_venues)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "department.pub").write_text(public_line(department_key.public_key()) + "\n", encoding="ascii")
    return sign_pack(payload, department_key), department_key


# A venue profile with one secret file, as a technician hands it to the department server.
SMALL = Path(__file__).resolve().parent.parent / "lab" / "scenarios" / "small.profile.yaml"
VENUE = "LAB-SMALL-0030"
CODE = "91350105MA2Y0AB12L"  # the small café's credit code in its profile
COMMUNITY = "secrets/snmp.community"


def write_profile(folder: Path, *, venue_id: str = VENUE, credit_code: str = CODE, text: str | None = None,
                  secret: bytes | None = None, secret_name: str = COMMUNITY) -> tuple[Path, bytes]:
    """The small café's profile (venue id, credit code and secret file name swapped in) in ``folder`` with its secret
    file (random bytes, mode 0600); returns the profile's path and the secret."""
    folder.mkdir(parents=True, exist_ok=True)
    body = text if text is not None else SMALL.read_text(encoding="utf-8")
    body = body.replace(f"id: {VENUE}", f"id: {venue_id}").replace(CODE, credit_code).replace(COMMUNITY, secret_name)
    path = folder / "venue.yaml"
    path.write_text(body, encoding="utf-8")
    content = secrets.token_bytes(24) + b"\x00\xff" if secret is None else secret
    target = folder / secret_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch(mode=0o600)
    target.chmod(0o600)
    target.write_bytes(content)
    return path, content
