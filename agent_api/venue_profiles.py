"""The department's store of venue profiles: what task packs are made from (``cafe-agent profile``).

A technician writes a venue's profile (probe.profile, DESIGN section 6) with
its secret files beside it; the store keeps a private copy of both under
``DATA/profiles/<venue id>/``: ``profile.yaml`` (the file's exact bytes) and
every secret file it names, at the same relative path, so that the copy loads
on its own and a pack can re-create the folder on the probe. Folders are 0700,
files 0600; a copy appears whole or not at all (it is built in a hidden
folder beside the others and renamed into place).

The key is the profile's ``venue.id``; a registry venue links to it through
its site id (场所编号, :attr:`~agent_api.dept_tables.Venue.site_id`). Adding a
profile whose venue id the registry does not know is allowed (the registry may
be imported later) but warned about. Replacing a stored profile must be asked
for; adding, replacing and removing are each one audit entry (names and
digests only: a secret's content is never read into a log or a message).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent_api import ApiError
from agent_api.audit import record
from agent_api.dept_tables import Venue
from agent_api.settings import Settings
from probe.keys import write_secret_file
from probe.profile import ProfileError, VenueProfile, load_profile
from probe.report import fsync_dir
from probe.taskpack import PackRefused, profile_secret_files

__all__ = ["PROFILE_FILE", "ProfileRefused", "StoredProfile", "AddedProfile", "check_venue_id", "add_profile",
           "get_profile", "list_profiles", "remove_profile", "registry_warnings"]

PROFILE_FILE = "profile.yaml"
# A venue id becomes a folder name: letters (any script), digits, _ . - ; never a path separator, never "..".
_VENUE_ID = re.compile(r"^\w[\w.-]{0,127}$")


class ProfileRefused(ApiError):
    """A profile the store will not take or cannot use; ``problems`` lists every reason, one line each."""

    def __init__(self, headline: str, problems: list[str], status: int = 422) -> None:
        super().__init__(status, "profile_refused", "\n".join([headline, *(f"  {p}" for p in problems)]))
        self.problems = problems


@dataclass(frozen=True)
class StoredProfile:
    """One stored venue profile, loaded and checked: where it is, what it says, its digest, its secret files' names."""

    venue_id: str
    directory: Path
    profile: VenueProfile
    text: str  # the YAML exactly as stored (UTF-8; a byte-order mark is kept)
    sha256: str  # of the file's bytes, as probe.profile.profile_sha256 gives it
    secret_paths: list[str]

    @property
    def path(self) -> Path:
        """The stored ``profile.yaml``."""
        return self.directory / PROFILE_FILE

    def secret_files(self) -> dict[str, bytes]:
        """``{relative path: content}`` of every secret the profile names (read now, for sealing only)."""
        return profile_secret_files(self.profile, self.directory)


@dataclass(frozen=True)
class AddedProfile:
    """What :func:`add_profile` did: the stored profile, the digest it replaced (if any) and warnings to show."""

    stored: StoredProfile
    replaced_sha256: str | None
    warnings: list[str]


def check_venue_id(venue_id: str) -> str:
    """``venue_id`` when it can name a folder of the store; 422 otherwise."""
    if not _VENUE_ID.fullmatch(venue_id):
        raise ApiError(422, "bad_venue_id", f"场所编号须为 1–128 个字母、数字或 _.-，且以字母或数字开头 / a venue id "
                                            f"must be 1–128 letters, digits or _.- starting with a letter or digit: "
                                            f"{venue_id!r}")
    return venue_id


def _root(settings: Settings) -> Path:
    root = settings.profiles_dir
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    return root


def _load(path: Path, headline: str) -> tuple[VenueProfile, bytes, dict[str, bytes]]:
    """The profile at ``path``, its bytes and its secret files; every problem listed on refusal."""
    try:
        profile = load_profile(path)
    except ProfileError as exc:
        raise ProfileRefused(headline, exc.problems) from None
    try:
        data = path.read_bytes()
        secrets = profile_secret_files(profile, path.parent)
    except PackRefused as exc:
        raise ProfileRefused(headline, [str(exc)]) from None
    except OSError as exc:
        raise ProfileRefused(headline, [f"无法读取 / cannot read: {exc.filename}: {exc.strerror}"]) from None
    if PROFILE_FILE in secrets:
        raise ProfileRefused(headline, [f"密钥文件不能命名为 {PROFILE_FILE} / a secret file cannot be named "
                                        f"{PROFILE_FILE}"])
    return profile, data, secrets


def _stored(venue_id: str, directory: Path, profile: VenueProfile, data: bytes,
            secrets: dict[str, bytes]) -> StoredProfile:
    return StoredProfile(venue_id=venue_id, directory=directory, profile=profile, text=data.decode("utf-8"),
                         sha256=hashlib.sha256(data).hexdigest(), secret_paths=sorted(secrets))


def get_profile(settings: Settings, venue_id: str) -> StoredProfile:
    """The stored profile of ``venue_id`` (404 when none; ProfileRefused when the stored copy no longer loads)."""
    directory = settings.profiles_dir / check_venue_id(venue_id)
    if not (directory / PROFILE_FILE).is_file():
        raise ApiError(404, "profile_not_found", f"没有场所 {venue_id} 的档案（cafe-agent profile add）/ no stored "
                                                 f"profile for venue {venue_id} (cafe-agent profile add)")
    profile, data, secrets = _load(directory / PROFILE_FILE, f"场所 {venue_id} 的存档不可用 / the stored profile of "
                                                             f"{venue_id} is unusable:")
    return _stored(venue_id, directory, profile, data, secrets)


def list_profiles(settings: Settings) -> list[str]:
    """The venue ids with a stored profile, sorted (hidden folders of an unfinished change are not profiles)."""
    root = settings.profiles_dir
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if _VENUE_ID.fullmatch(p.name) and (p / PROFILE_FILE).is_file())


def registry_warnings(db: Session, profile: VenueProfile) -> list[str]:
    """Why a pack could not use this profile yet as far as the registry goes (its venue id is no site id there, or
    the credit codes differ); empty when the registry links to it."""
    venue = db.execute(select(Venue).where(Venue.site_id == profile.venue.id)).scalar_one_or_none()
    if venue is None:
        return [f"名录库中没有场所编号为 {profile.venue.id} 的场所，导出任务包前须在名录中登记 / no registry venue has "
                f"site id {profile.venue.id}; set it (场所编号) in the venue registry before exporting packs"]
    if profile.venue.credit_code and profile.venue.credit_code != venue.credit_code:
        return [f"档案的信用代码 {profile.venue.credit_code} 与名录中 {venue.credit_code}（{venue.name}）不一致 / the "
                f"profile's credit code differs from the registry's for site id {profile.venue.id}"]
    return []


def _write_copy(root: Path, data: bytes, secrets: dict[str, bytes]) -> Path:
    """A complete private copy in a new hidden folder of ``root``; its path."""
    folder = Path(tempfile.mkdtemp(prefix=".new-", dir=root))  # made 0700
    for name, content in secrets.items():
        target = folder / name
        for parent in reversed(target.relative_to(folder).parents[:-1]):
            (folder / parent).mkdir(exist_ok=True, mode=0o700)
            os.chmod(folder / parent, 0o700)
        write_secret_file(target, content)
    write_secret_file(folder / PROFILE_FILE, data)
    for directory in {p.parent for p in folder.rglob("*")}:
        fsync_dir(directory)
    return folder


@contextmanager
def _swapped(root: Path, new: Path | None, target: Path) -> Iterator[None]:
    """Put ``new`` (None: nothing) where ``target`` is while the block runs; the old folder goes when the block
    succeeds and comes back when it fails (the caller commits its audit entry inside the block)."""
    old = root / f".old-{uuid.uuid4().hex}" if target.exists() else None
    if old is not None:
        os.rename(target, old)
    placed = False
    try:
        if new is not None:
            os.rename(new, target)  # fails, rather than merge, if another writer put a folder there meanwhile
            placed = True
        fsync_dir(root)
        yield
    except BaseException:
        if placed:
            shutil.rmtree(target)
        if old is not None and not target.exists():
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old)


def _changed(venue_id: str) -> ApiError:
    return ApiError(409, "profile_changed", f"场所 {venue_id} 的档案刚被他人更改，请重试 / the stored profile of "
                                            f"{venue_id} changed meanwhile; try again")


def _digest(directory: Path) -> str | None:
    """SHA-256 of a stored ``profile.yaml`` as it is on disk (even one that no longer loads); None when none."""
    try:
        return hashlib.sha256((directory / PROFILE_FILE).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def add_profile(db: Session, settings: Settings, source: Path, *, actor: str, replace: bool = False) -> AddedProfile:
    """Validate the profile at ``source`` and store a private copy of it and its secret files; commit the audit entry.

    ProfileRefused (422) lists every problem of the profile, or names a secret
    outside the profile's folder; 409 when the venue already has a stored
    profile and ``replace`` is not set.
    """
    profile, data, secrets = _load(source, f"档案无法使用 / the profile cannot be used: {source}")
    venue_id = check_venue_id(profile.venue.id)
    root = _root(settings)
    target = root / venue_id
    previous = _digest(target)
    if previous is not None and not replace:
        raise ApiError(409, "profile_exists", f"场所 {venue_id} 已有档案；替换请加 --replace / venue {venue_id} already "
                                              "has a stored profile; pass --replace to replace it")
    folder = _write_copy(root, data, secrets)
    try:
        copy, copied, copied_secrets = _load(folder / PROFILE_FILE, "存档副本无法加载 / the stored copy does not load:")
        if copied != data or copied_secrets != secrets:
            raise ProfileRefused("存档副本与原件不符 / the stored copy differs from the original", [str(source)])
        stored = _stored(venue_id, target, copy, data, secrets)
        detail = {"venue_id": venue_id, "name": profile.venue.name, "credit_code": profile.venue.credit_code,
                  "sha256": stored.sha256, "secret_paths": stored.secret_paths, "source": str(source.resolve()),
                  "replaced_sha256": previous}
        record(db, actor, "profile.replace" if previous else "profile.add", f"profile:{venue_id}", detail)
        # record() holds the audit log's write lock until the commit: another add of this venue that got in
        # between the check above and here has committed by now, and is seen.
        if _digest(target) != previous:
            raise _changed(venue_id)
        warnings = list(profile.warnings) + registry_warnings(db, profile)
        with _swapped(root, folder, target):
            db.commit()
    except BaseException:
        db.rollback()
        raise
    finally:
        if folder.exists():
            shutil.rmtree(folder)
    # The copy was checked in its hidden folder; the renamed folder holds the same files.
    return AddedProfile(stored=get_profile(settings, venue_id), replaced_sha256=previous, warnings=warnings)


def remove_profile(db: Session, settings: Settings, venue_id: str, *, actor: str) -> str:
    """Remove a stored profile and its secrets; commit the audit entry. Returns the removed profile's digest (404
    when none)."""
    directory = settings.profiles_dir / check_venue_id(venue_id)
    digest = _digest(directory)
    if digest is None:
        raise ApiError(404, "profile_not_found", f"没有场所 {venue_id} 的档案 / no stored profile for venue {venue_id}")
    try:
        record(db, actor, "profile.remove", f"profile:{venue_id}", {"venue_id": venue_id, "sha256": digest})
        if _digest(directory) != digest:  # changed by a writer that committed before record() got the lock
            raise _changed(venue_id)
        with _swapped(settings.profiles_dir, None, directory):
            db.commit()
    except BaseException:
        db.rollback()
        raise
    return digest
