"""Hardware profiles: which port is on the café switch, which one reaches the inspector, the LEDs, the rights.

A profile is a YAML file (``hardware/profiles/{pi4,pi5,laptop}.yaml`` ship with the probe)::

    name: pi4
    description: {zh: …, en: …}
    detect: Raspberry Pi 4                 # substring of /proc/device-tree/model; absent: never detected
    cafe_port: {name: eth0} | {match: ['en*', 'eth*']}          # the wired port on the café switch
    officer_link: {name: wlan0 | match: […], kind: wifi | usb-ethernet}   # the link to the inspector device
    leds: {status: [ACT, led0], alert: [PWR, led1]}   # LED class names, first present wins; globs allowed
    leds_root: /sys/class/leds
    capture: {user: cafe-probe, capabilities: [CAP_NET_RAW, CAP_NET_ADMIN]}
    clock_tolerance_seconds: 5
    min_free_megabytes: 200

Unknown keys are an error naming the key. On a probe, ``/etc/cafe-probe/hardware.yaml`` (or the file named
by ``$CAFE_PROBE_HARDWARE``) names a shipped profile and may replace any of its top-level keys::

    profile: pi4
    officer_link: {name: eth1, kind: usb-ethernet}

A top-level key given there replaces the shipped one whole (``cafe_port: {name: …}`` must not inherit the
shipped ``match``). Every failure is a :class:`HardwareError` with one line, Chinese first, then English.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, model_validator

__all__ = [
    "ENV_VAR",
    "MODEL_FILE",
    "OVERRIDE_FILE",
    "PROFILE_NAMES",
    "HardwareError",
    "HardwareProfile",
    "OfficerLinkSpec",
    "PortSpec",
    "detect_profile",
    "list_interfaces",
    "load_hardware",
    "resolve_port",
    "resolve_ports",
]

PROFILES_DIR = Path(__file__).with_name("profiles")
PROFILE_NAMES = ("pi4", "pi5", "laptop")
OVERRIDE_FILE = Path("/etc/cafe-probe/hardware.yaml")
ENV_VAR = "CAFE_PROBE_HARDWARE"
MODEL_FILE = Path("/proc/device-tree/model")
FALLBACK = "laptop"
# A profile is a page of YAML; anything far larger is the wrong file.
MAX_PROFILE_BYTES = 64 * 1024


class HardwareError(Exception):
    """A hardware profile cannot be loaded, or its ports cannot be found; the message is one line."""


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# Interface names: at most 15 bytes (IFNAMSIZ - 1), no '/' or blanks. Globs add * ? and [ ].
_IfName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@-]{1,15}$")]
_IfGlob = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@*?\[\]-]{1,15}$")]
# LED class names are sysfs directory names ("ACT", "input3::capslock"); one path component, globs allowed.
_LedName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_:+*?-][A-Za-z0-9_.:+*?-]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    """Words for people, Chinese first."""

    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class PortSpec(_Strict):
    """One network port: an exact interface ``name``, or ``match`` globs (one string or a list)."""

    name: _IfName | None = None
    match: Annotated[list[_IfGlob] | None, BeforeValidator(_as_list)] = None

    @model_validator(mode="after")
    def _one_way(self) -> "PortSpec":
        if (self.name is None) == (self.match is None):
            raise ValueError("give exactly one of name or match")
        if self.match is not None and not self.match:
            raise ValueError("match needs at least one glob")
        return self

    def matches(self, ifname: str) -> bool:
        """Whether interface ``ifname`` is this port."""
        if self.name is not None:
            return ifname == self.name
        return any(fnmatch.fnmatchcase(ifname, glob) for glob in self.match or ())

    def describe(self) -> str:
        """``eth0`` or ``en*|eth*``, as the profile says it."""
        return self.name if self.name is not None else "|".join(self.match or ())


class OfficerLinkSpec(PortSpec):
    """The second link, to the inspector's device: Wi-Fi or a USB Ethernet adapter."""

    kind: Literal["wifi", "usb-ethernet"]


class _Leds(_Strict):
    status: Annotated[list[_LedName], BeforeValidator(_as_list)] = Field(default_factory=list, max_length=8)
    alert: Annotated[list[_LedName], BeforeValidator(_as_list)] = Field(default_factory=list, max_length=8)


class Capture(_Strict):
    """The unprivileged user the autorun service runs as, and the only capabilities it is given.

    CAP_NET_RAW opens the AF_PACKET sockets (raw frames, the capture file); CAP_NET_ADMIN adds the probe's
    address on the café port for one run and removes it afterwards. Nothing else is ever granted.
    """

    user: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,30}$")] = "cafe-probe"
    capabilities: list[Literal["CAP_NET_RAW", "CAP_NET_ADMIN"]] = Field(min_length=1)


class _Spec(_Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
    description: Text
    detect: str | None = Field(default=None, min_length=1)
    cafe_port: PortSpec
    officer_link: OfficerLinkSpec
    leds: _Leds = Field(default_factory=_Leds)
    leds_root: Path = Path("/sys/class/leds")
    capture: Capture
    clock_tolerance_seconds: float = Field(gt=0, le=3600)
    min_free_megabytes: int = Field(ge=1, le=1_000_000)


@dataclass(frozen=True)
class HardwareProfile:
    """A loaded profile. ``leds`` resolves the candidate names against ``leds_root`` each time it is read."""

    name: str
    description: Text
    detect: str | None
    cafe_port: PortSpec
    officer_link: OfficerLinkSpec
    led_names: dict[str, tuple[str, ...]]  # role -> candidate LED class names (globs allowed), in order
    leds_root: Path
    capture: Capture
    clock_tolerance: float  # seconds
    min_free_bytes: int
    source: Path  # the file it came from (the override file when there was one)

    @property
    def leds(self) -> dict[str, Path]:
        """Role (``status`` / ``alert``) -> LED class directory: the first candidate present under
        ``leds_root``; when none is present, the first candidate's path, so the LED reports it missing."""
        found: dict[str, Path] = {}
        for role, candidates in self.led_names.items():
            if not candidates:
                continue
            found[role] = next((p for c in candidates for p in _led_dirs(self.leds_root, c)),
                               self.leds_root / candidates[0])
        return found

    def all_led_names(self) -> list[str]:
        """Every candidate LED name of every role, once each, in order (for the udev rule)."""
        return list(dict.fromkeys(name for names in self.led_names.values() for name in names))


def _led_dirs(root: Path, candidate: str) -> list[Path]:
    if any(ch in candidate for ch in "*?["):
        return sorted(p for p in root.glob(candidate) if p.is_dir())
    path = root / candidate
    return [path] if path.is_dir() else []


# --------------------------------------------------------------------------
# Loading


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_PROFILE_BYTES + 1)
    except FileNotFoundError:
        raise HardwareError(f"没有硬件档案 {path} / no such hardware profile: {path} "
                            f"(shipped: {', '.join(PROFILE_NAMES)})") from None
    except OSError as exc:
        raise HardwareError(f"无法读取硬件档案 {path} / cannot read hardware profile {path}: "
                            f"{exc.strerror or exc}") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise HardwareError(f"{path}: 文件过大 / file too large (over {MAX_PROFILE_BYTES} bytes)")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise HardwareError(f"{path}: 不是 UTF-8 文本 / not UTF-8 text") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HardwareError(f"{path}: YAML 语法错误 / YAML syntax error: {first}") from None
    if not isinstance(data, dict):
        raise HardwareError(f"{path}: 顶层必须是映射 / the top level must be a mapping (name:, cafe_port:, …)")
    return data


def _validate(data: dict[str, Any], source: Path) -> HardwareProfile:
    try:
        spec = _Spec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in error["loc"]) or "(top)"
            if error["type"] == "extra_forbidden":
                problems.append(f"{where}: 未知的键 / unknown key")
            elif error["type"] == "missing":
                problems.append(f"{where}: 缺少必填的键 / missing required key")
            else:
                problems.append(f"{where}: 值无效 / invalid value: {error['msg'].removeprefix('Value error, ')}")
        raise HardwareError(f"{source}: " + "; ".join(problems)) from None
    return HardwareProfile(
        name=spec.name, description=spec.description, detect=spec.detect, cafe_port=spec.cafe_port,
        officer_link=spec.officer_link,
        led_names={"status": tuple(spec.leds.status), "alert": tuple(spec.leds.alert)},
        leds_root=spec.leds_root, capture=spec.capture, clock_tolerance=spec.clock_tolerance_seconds,
        min_free_bytes=spec.min_free_megabytes * 1024 * 1024, source=source)


def _shipped_data(name: str) -> dict[str, Any]:
    if name not in PROFILE_NAMES:
        raise HardwareError(f"未知的硬件档案 {name!r} / unknown hardware profile {name!r} "
                            f"(shipped: {', '.join(PROFILE_NAMES)})")
    return _read_yaml(PROFILES_DIR / f"{name}.yaml")


def _load_file(path: Path) -> HardwareProfile:
    data = _read_yaml(path)
    if "profile" in data:  # an override file: a shipped profile with some top-level keys replaced
        base = data.pop("profile")
        if not isinstance(base, str):
            raise HardwareError(f"{path}: profile: 必须是档案名 / must name a profile "
                                f"({', '.join(PROFILE_NAMES)})")
        try:
            shipped = _shipped_data(base)
        except HardwareError as exc:
            raise HardwareError(f"{path}: profile: {exc}") from None
        data = {**shipped, **data}
    return _validate(data, path)


def detect_profile(model_file: Path = MODEL_FILE) -> str:
    """The shipped profile whose ``detect`` text is in the device-tree model, else ``laptop``.

    When several match, the longest ``detect`` wins (the most specific board)."""
    try:
        model = model_file.read_bytes()[:256].rstrip(b"\0").decode("utf-8", "replace")
    except OSError:
        return FALLBACK
    best: tuple[int, str] | None = None
    for name in PROFILE_NAMES:
        detect = _shipped_data(name).get("detect")
        if isinstance(detect, str) and detect and detect in model:
            if best is None or len(detect) > best[0]:
                best = (len(detect), name)
    return best[1] if best else FALLBACK


def load_hardware(name_or_path: str | os.PathLike[str] | None = None, *,
                  model_file: Path = MODEL_FILE) -> HardwareProfile:
    """Load a hardware profile: a shipped name (pi4, pi5, laptop) or a YAML file (a full profile, or an
    override file naming one). ``None``: ``$CAFE_PROBE_HARDWARE``, else ``/etc/cafe-probe/hardware.yaml``
    when it exists, else the board detected from ``/proc/device-tree/model``, else ``laptop``.

    Raises :class:`HardwareError` (one line) and nothing else."""
    if name_or_path is None:
        env = os.environ.get(ENV_VAR)
        if env:
            return load_hardware(env, model_file=model_file)
        if OVERRIDE_FILE.exists():
            return _load_file(OVERRIDE_FILE)
        name_or_path = detect_profile(model_file)
    text = os.fspath(name_or_path)
    if text in PROFILE_NAMES:
        return _validate(_shipped_data(text), PROFILES_DIR / f"{text}.yaml")
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        raise HardwareError(f"未知的硬件档案 {text!r} / unknown hardware profile {text!r} "
                            f"(shipped: {', '.join(PROFILE_NAMES)}, or a YAML file)")
    return _load_file(Path(text))


# --------------------------------------------------------------------------
# Ports


def list_interfaces() -> list[str]:
    """Names of the network interfaces present in this namespace, loopback left out (netlink, read-only)."""
    from pyroute2 import IPRoute  # netlink only here: loading a profile must not need it

    iff_loopback = 0x8
    try:
        with IPRoute() as ipr:
            links = ipr.get_links()
    except Exception as exc:  # noqa: BLE001 - any netlink failure becomes one clear line
        raise HardwareError(f"无法读取网络接口 / cannot list the network interfaces: {exc}") from None
    return sorted(str(link.get_attr("IFLA_IFNAME")) for link in links if not link["flags"] & iff_loopback)


_PORT_WORDS = {"cafe_port": ("网吧端口", "café port"), "officer_link": ("检查设备链路", "officer link")}


def resolve_port(spec: PortSpec, role: Literal["cafe_port", "officer_link"],
                 present: Iterable[str] | None = None) -> str:
    """The one interface among ``present`` (default: those in this namespace) that ``spec`` names.

    ``role`` names the port in the message. Zero or several matches raise :class:`HardwareError`
    naming the interfaces found."""
    names = sorted(present) if present is not None else list_interfaces()
    found = [n for n in names if spec.matches(n)]
    if len(found) == 1:
        return found[0]
    zh, en = _PORT_WORDS[role]
    shown = ", ".join(names) or "-"
    if not found:
        raise HardwareError(f"没有接口符合{zh}（{spec.describe()}），现有接口：{shown} / no interface matches the "
                            f"{en} ({spec.describe()}); present: {shown}")
    raise HardwareError(f"多个接口符合{zh}（{spec.describe()}）：{', '.join(found)}，请在 {OVERRIDE_FILE} 中用 "
                        f"{role}: {{name: …}} 指定 / several interfaces match the {en} ({spec.describe()}): "
                        f"{', '.join(found)}; name one in {OVERRIDE_FILE} ({role}: {{name: …}})")


def resolve_ports(profile: HardwareProfile, present: Iterable[str] | None = None) -> tuple[str, str]:
    """``(cafe_port, officer_link)`` interface names, each matched against the interfaces present.

    Raises :class:`HardwareError` (one line) when either matches none or several, or both are one."""
    names = sorted(present) if present is not None else list_interfaces()
    cafe = resolve_port(profile.cafe_port, "cafe_port", names)
    officer = resolve_port(profile.officer_link, "officer_link", names)
    if cafe == officer:
        raise HardwareError(f"网吧端口与检查设备链路是同一个接口 {cafe} / the café port and the officer link are "
                            f"the same interface: {cafe}")
    return cafe, officer

