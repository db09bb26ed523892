"""Who may do what: officers (argon2id passwords, browser sessions, HTTP Basic) and enrolled probe keys.

A probe authenticates with its signature, so a probe is "authorised" exactly
while its public key is enrolled and not revoked. Officers authenticate with
the ``cafe_session`` cookie (browser) or HTTP Basic (API clients, scripts).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request, Response
from fastapi.security import APIKeyCookie, HTTPBasic, HTTPBasicCredentials
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent_api import ApiError
from agent_api.audit import ANONYMOUS, CLI, now, officer_actor, record
from agent_api.db import Officer, Probe, WebSession, get_db
from agent_api.settings import SESSION_HOURS
from probe.keys import KeyFileError, key_id, parse_public_key, public_line

__all__ = ["COOKIE_NAME", "hash_password", "verify_password", "authenticate", "login", "create_officer",
           "start_session", "end_session", "session_for_token", "set_session_cookie", "clear_session_cookie",
           "require_officer", "check_csrf", "enroll_probe", "revoke_probe", "MIN_PASSWORD"]

COOKIE_NAME = "cafe_session"
MIN_PASSWORD = 8
_USERNAME = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")

# argon2-cffi's defaults are argon2id with RFC 9106's low-memory profile.
_hasher = PasswordHasher()
_basic = HTTPBasic(auto_error=False, realm="cafe-agent")
_cookie = APIKeyCookie(name=COOKIE_NAME, auto_error=False)

UNAUTHORIZED = ApiError(401, "unauthorized", "需要检查人员登录 / officer login required",
                        headers={"WWW-Authenticate": 'Basic realm="cafe-agent"'})


def hash_password(password: str) -> str:
    """An argon2id hash (PHC string) of ``password``."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches the stored hash; a malformed hash never matches."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def authenticate(db: Session, username: str, password: str) -> Officer | None:
    """The active officer with these credentials, or None.

    An unknown user costs the same argon2 verification as a wrong password,
    so the answer time does not tell which usernames exist.
    """
    officer = db.execute(select(Officer).where(Officer.username == username)).scalar_one_or_none()
    if officer is None:
        verify_password(_dummy_hash(), password)
        return None
    if not verify_password(officer.password_hash, password) or not officer.active:
        return None
    return officer


def create_officer(db: Session, username: str, display_name: str, badge: str, password: str,
                   by: Officer | None = None) -> Officer:
    """Add an officer account and commit; 409 when the username or badge is taken, 422 when a field is unusable."""
    if not _USERNAME.fullmatch(username):
        raise ApiError(422, "bad_username", "用户名须为 2–64 个字母、数字或 _.- / username: 2–64 letters, digits or _.-")
    if not display_name.strip() or not badge.strip():
        raise ApiError(422, "missing_field", "姓名和警号不能为空 / name and badge are required")
    if len(password) < MIN_PASSWORD:
        raise ApiError(422, "weak_password", f"密码至少 {MIN_PASSWORD} 个字符 / password needs at least {MIN_PASSWORD} characters")
    officer = Officer(username=username, display_name=display_name.strip(), badge=badge.strip(),
                      password_hash=hash_password(password), active=True, created_at=now(db))
    db.add(officer)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        raise ApiError(409, "officer_exists", "用户名或警号已存在 / username or badge already exists") from None
    record(db, officer_actor(by) if by else CLI, "officer.create", username,
           {"display_name": officer.display_name, "badge": officer.badge})
    db.commit()
    return officer


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(db: Session, officer: Officer) -> tuple[str, str]:
    """Open a browser session (8 h) and commit; returns (cookie token, CSRF token). Expired sessions are purged."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    at = now(db)
    # Stored as ISO text with an offset: compare in Python, not in SQL.
    for stale in db.execute(select(WebSession)).scalars():
        if stale.expires_at <= at:
            db.delete(stale)
    db.add(WebSession(token_sha256=_token_hash(token), officer_id=officer.id, csrf_token=csrf,
                      created_at=at, expires_at=at + timedelta(hours=SESSION_HOURS)))
    record(db, officer_actor(officer), "login", officer.username, {})
    db.commit()
    return token, csrf


def login(db: Session, username: str, password: str) -> tuple[Officer, str, str] | None:
    """Authenticate and open a session: (officer, token, csrf); None (and a 'login.fail' entry) otherwise."""
    officer = authenticate(db, username, password)
    if officer is None:
        record(db, ANONYMOUS, "login.fail", username[:200], {})
        db.commit()
        return None
    token, csrf = start_session(db, officer)
    return officer, token, csrf


def session_for_token(db: Session, token: str | None) -> WebSession | None:
    """The live session for a cookie token (not expired, officer active), or None."""
    if not token:
        return None
    ws = db.get(WebSession, _token_hash(token))
    if ws is None or ws.expires_at <= now(db) or not ws.officer.active:
        return None
    return ws


def end_session(db: Session, token: str | None) -> None:
    """Log a browser session out (no-op for an unknown token) and commit."""
    ws = session_for_token(db, token)
    if ws is None:
        return
    record(db, officer_actor(ws.officer), "logout", ws.officer.username, {})
    db.execute(delete(WebSession).where(WebSession.token_sha256 == ws.token_sha256))
    db.commit()


def set_session_cookie(response: Response, token: str) -> None:
    """Put the session token in the browser: HttpOnly, SameSite=Strict, Path=/, 8 h.

    Not ``Secure``: the device serves plain HTTP on loopback or the officers'
    own LAN link, where a Secure cookie would never be sent back.
    """
    response.set_cookie(COOKIE_NAME, token, max_age=SESSION_HOURS * 3600, path="/", httponly=True,
                        samesite="strict", secure=False)


def clear_session_cookie(response: Response) -> None:
    """Remove the session cookie from the browser."""
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")


def require_officer(request: Request, db: Session = Depends(get_db),
                    cookie: str | None = Depends(_cookie),
                    basic: HTTPBasicCredentials | None = Depends(_basic)) -> Officer:
    """FastAPI dependency: the officer behind the session cookie or HTTP Basic credentials, else 401.

    With a cookie, the live :class:`WebSession` is left in ``request.state.web_session``
    (for :func:`check_csrf` on form posts).
    """
    ws = session_for_token(db, cookie)
    if ws is not None:
        request.state.web_session = ws
        return ws.officer
    if basic is not None:
        officer = authenticate(db, basic.username, basic.password)
        if officer is not None:
            return officer
        record(db, ANONYMOUS, "login.fail", basic.username[:200], {"via": "basic"})
        db.commit()
    raise UNAUTHORIZED


def check_csrf(session: WebSession, token: str | None) -> bool:
    """Whether a form's CSRF token is this session's (constant-time comparison)."""
    return bool(token) and hmac.compare_digest(session.csrf_token.encode(), token.encode())


def enroll_probe(db: Session, probe_id: str, public_key: str, label: str = "", by: Officer | None = None) -> Probe:
    """Enroll a probe's public key (PEM or ``ed25519:`` line) and commit.

    422 for an unusable key or id, 409 when the key or the probe id is already enrolled.
    """
    probe_id = probe_id.strip()
    if not probe_id or len(probe_id) > 200:
        raise ApiError(422, "bad_probe_id", "探针编号须为 1–200 个字符 / probe_id must be 1–200 characters")
    if len(label) > 200:
        raise ApiError(422, "bad_label", "标签过长 / label longer than 200 characters")
    try:
        key = parse_public_key(public_key)
    except KeyFileError as exc:
        raise ApiError(422, "bad_public_key", str(exc)) from None
    kid = key_id(key)
    clash = db.execute(select(Probe).where((Probe.key_id == kid) | (Probe.probe_id == probe_id))).scalars().first()
    if clash is not None:
        what = "公钥已登记 / key already enrolled" if clash.key_id == kid else "探针编号已登记 / probe_id already enrolled"
        raise ApiError(409, "already_enrolled", f"{what} ({clash.probe_id})")
    probe = Probe(probe_id=probe_id, key_id=kid, public_key=public_line(key), label=label,
                  enrolled_by=by.id if by else None, enrolled_at=now(db))
    db.add(probe)
    try:
        db.flush()
    except IntegrityError:  # a concurrent enrollment of the same key or id won
        db.rollback()
        raise ApiError(409, "already_enrolled", "公钥或探针编号已登记 / key or probe_id already enrolled") from None
    record(db, officer_actor(by) if by else CLI, "probe.enroll", kid, {"probe_id": probe_id, "label": label})
    db.commit()
    return probe


def revoke_probe(db: Session, probe_id: str, by: Officer | None = None) -> Probe:
    """Revoke a probe's key (its later reports are refused; stored ones stay) and commit; 404 if unknown."""
    probe = db.execute(select(Probe).where(Probe.probe_id == probe_id)).scalar_one_or_none()
    if probe is None:
        raise ApiError(404, "unknown_probe", f"未登记的探针 / no such probe: {probe_id}")
    if probe.revoked_at is None:
        probe.revoked_at = now(db)
        record(db, officer_actor(by) if by else CLI, "probe.revoke", probe.key_id, {"probe_id": probe_id})
        db.commit()
    return probe
