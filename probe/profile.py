"""Venue profile: what a technician stages about one café, checked on load.

The profile is a YAML file (key names are binding, see DESIGN.md §6)::

    venue:     {id, name, credit_code, address, licensed_terminals, licensed_servers}
    network:   {subnets, probe_address, gateways, gateway_macs, dhcp_servers, external_target, egress, forwarding}
    terminals: {hostname_pattern, first_address, mac_table}
    servers:   {billing, audit, cameras, nvrs, signatures, log_sources, snmp}

Every problem found is reported at once, as one line naming the dotted key
path, Chinese first, then English::

    terminals.hostname_patern: 未知的键 / unknown key
    network.subnets[0]: 不是有效的 IPv4 网段 / not a valid IPv4 network: ...

``load_profile`` and ``parse_profile`` raise :class:`ProfileError` and
nothing else, whatever the input, because a technician's typo must end in a
readable refusal and never in a traceback on site.

Secrets (SSH passwords and keys, SNMP communities and v3 keys) stay in files
next to the profile; the profile names them, the loader checks that each one
exists and is private (mode 0600 or stricter) and stores its absolute path.
Their contents are never read here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
import struct
from datetime import date, datetime
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from stdnum.cn import uscc

from probe.signatures import Signature
from stdnum.exceptions import InvalidChecksum, InvalidLength
from stdnum.exceptions import ValidationError as CodeError

__all__ = [
    "LogPath",
    "LogSource",
    "Network",
    "ProfileError",
    "Servers",
    "ServiceRef",
    "SnmpTarget",
    "SnmpV3",
    "Terminals",
    "Venue",
    "VenueProfile",
    "load_profile",
    "normalise_mac",
    "parse_profile",
    "profile_sha256",
]

# Profiles are a few kilobytes even with a full MAC table; anything far larger
# is the wrong file, and reading it whole would only waste the probe's memory.
MAX_PROFILE_BYTES = 1024 * 1024

ROOT = "(profile)"

# Error types of our own. One problem at the error's own location, or several
# problems at locations below it (cross-field checks that must name the exact
# key, which pydantic cannot do from a model validator).
_ONE = "cafe_probe"
_MANY = "cafe_probe_many"


class ProfileError(Exception):
    """The profile cannot be used; ``problems`` holds one line per problem.

    Each line names the dotted key path (or the file) and the reason, Chinese
    first, then English. ``str()`` gives all lines joined by newlines.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        unique = list(dict.fromkeys(problems))
        self.problems: list[str] = unique or [f"{ROOT}: 无效的配置 / invalid profile"]
        super().__init__("\n".join(self.problems))

    def __reduce__(self) -> tuple[Any, ...]:
        # The default would rebuild from the joined string, not the list.
        return (type(self), (self.problems,))

    def __str__(self) -> str:
        return "\n".join(self.problems)


# --------------------------------------------------------------------------
# Problem helpers


def _problem(zh: str, en: str) -> PydanticCustomError:
    return PydanticCustomError(_ONE, "{en}", {"zh": zh, "en": en})


def _problems(items: list[tuple[tuple[str | int, ...], str, str]]) -> PydanticCustomError:
    en = "; ".join(f"{_format_path(loc)}: {e}" for loc, _, e in items)
    return PydanticCustomError(_MANY, "{en}", {"en": en, "items": tuple(items)})


def _show(value: Any, limit: int = 80) -> str:
    """repr() of a user value, cut short: fuzzers and typos can be huge."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> tuple[str, str]:
    """What YAML turned a value into, in words a technician knows."""
    if value is None:
        return "空值", "nothing (null)"
    if isinstance(value, bool):
        return "布尔值", "true/false (YAML reads yes/no/on/off as booleans)"
    if isinstance(value, (int, float)):
        return "数字", "a number"
    if isinstance(value, (date, datetime)):
        return "日期", "a date"
    if isinstance(value, list):
        return "列表", "a list"
    if isinstance(value, dict):
        return "映射", "a mapping"
    return type(value).__name__, type(value).__name__


def _need_string(value: Any, zh_what: str, en_what: str, example: str) -> str:
    if isinstance(value, str):
        return value
    zh_kind, en_kind = _kind(value)
    raise _problem(
        f"{zh_what}应写成字符串，例如 {example}，实际是{zh_kind}",
        f"{en_what} must be a string like {example}, got {en_kind}",
    )


# --------------------------------------------------------------------------
# Field types


def _parse_network(value: Any) -> IPv4Network:
    if isinstance(value, IPv4Network):
        return value
    text = _need_string(value, "网段", "an IPv4 network", "198.18.10.0/24")
    if "/" not in text:
        raise _problem(
            "不是有效的 IPv4 网段：缺少前缀长度",
            f"not a valid IPv4 network: {_show(text)} has no prefix length (write e.g. 198.18.10.0/24)",
        )
    try:
        return IPv4Network(text)
    except ValueError as exc:
        try:
            loose = IPv4Network(text, strict=False)
        except ValueError:
            raise _problem(
                "不是有效的 IPv4 网段", f"not a valid IPv4 network: {_show(text)} ({exc})"
            ) from None
        raise _problem(
            f"不是有效的 IPv4 网段：主机位不为零，应为 {loose}",
            f"not a valid IPv4 network: {_show(text)} has host bits set (did you mean {loose}?)",
        ) from None


def _parse_address(value: Any) -> IPv4Address:
    if isinstance(value, IPv4Address):
        return value
    text = _need_string(value, "IPv4 地址", "an IPv4 address", "198.18.10.1")
    try:
        return IPv4Address(text)
    except ValueError as exc:
        raise _problem(
            "不是有效的 IPv4 地址", f"not a valid IPv4 address: {_show(text)} ({exc})"
        ) from None


def _parse_interface(value: Any) -> IPv4Interface:
    if isinstance(value, IPv4Interface):
        return value
    text = _need_string(value, "接口地址", "an interface address", "198.18.10.250/24")
    if "/" not in text:
        # Without a prefix ipaddress assumes /32, which would cut the probe
        # off from its own LAN.
        raise _problem(
            "不是有效的接口地址：缺少前缀长度",
            f"not a valid interface address: {_show(text)} has no prefix length "
            "(write e.g. 198.18.10.250/24)",
        )
    try:
        return IPv4Interface(text)
    except ValueError as exc:
        raise _problem(
            "不是有效的接口地址", f"not a valid interface address: {_show(text)} ({exc})"
        ) from None


def _none_is_empty_list(value: Any) -> Any:
    # "gateways:" with nothing after it is YAML null; technicians mean "none".
    return [] if value is None else value


def _none_is_empty_dict(value: Any) -> Any:
    return {} if value is None else value


Address4 = Annotated[IPv4Address, BeforeValidator(_parse_address)]
Network4 = Annotated[IPv4Network, BeforeValidator(_parse_network)]
Interface4 = Annotated[IPv4Interface, BeforeValidator(_parse_interface)]
Text = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1)]
# strict: YAML "true" or "1.5" must not silently become a count.
Count = Annotated[int, Field(strict=True, ge=0)]
MachineNumber = Annotated[int, Field(strict=True, ge=0)]


_MAC_RE = re.compile(
    r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}",
    re.IGNORECASE | re.ASCII,
)


def normalise_mac(text: str) -> str:
    """Return ``text`` as a lower-case colon MAC (``aa:bb:cc:dd:ee:ff``).

    Accepts ``aa:bb:cc:dd:ee:ff``, ``AA-BB-CC-DD-EE-FF`` (Windows) and
    ``aabb.ccdd.eeff`` (Cisco/H3C); raises ``ValueError`` otherwise.
    """
    if not isinstance(text, str) or not _MAC_RE.fullmatch(text):
        raise ValueError(f"not a MAC address: {_show(text)}")
    digits = re.sub(r"[^0-9a-fA-F]", "", text).lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _check_mac(key: Any) -> tuple[str | None, tuple[str, str] | None]:
    """Normalised MAC, or the reason the key is not a terminal's MAC."""
    if not isinstance(key, str):
        zh_kind, en_kind = _kind(key)
        return None, (
            f"键必须是 MAC 地址字符串，实际是{zh_kind}（请给 MAC 加引号）",
            f"key must be a MAC address string, got {en_kind} (put the MAC in quotes)",
        )
    try:
        mac = normalise_mac(key)
    except ValueError:
        return None, (
            "不是有效的 MAC 地址（可写作 aa:bb:cc:dd:ee:ff、AA-BB-CC-DD-EE-FF 或 aabb.ccdd.eeff）",
            f"not a MAC address: {_show(key)} (write aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF "
            "or aabb.ccdd.eeff)",
        )
    first = int(mac[:2], 16)
    if first & 1 or mac == "00:00:00:00:00:00":
        return None, (
            "组播、广播或全零 MAC 不可能是终端的地址",
            f"{mac} is a multicast, broadcast or all-zero MAC; no terminal has it",
        )
    return mac, None


def _check_secret(value: Any, info: ValidationInfo) -> Path:
    """Absolute path of a private secret file; the file is never opened."""
    if isinstance(value, Path):
        raw = value
    elif isinstance(value, str) and value.strip():
        raw = Path(value)
    else:
        zh_kind, en_kind = _kind(value)
        raise _problem(
            f"必须是密钥文件的路径，实际是{zh_kind}",
            f"must be the path of a secret file, got {en_kind}",
        )
    if "\x00" in str(raw):
        raise _problem("路径中含有空字符", "path contains a NUL character")
    if not raw.is_absolute():
        base = (info.context or {}).get("base_dir")
        if base is None:
            raise _problem(
                "相对路径需要配置文件所在的目录（请用 load_profile 或 parse_profile 加载）",
                "a relative path needs the profile's directory (load with load_profile or "
                "parse_profile)",
            )
        raw = Path(base) / raw
    full = Path(os.path.abspath(raw))
    try:
        st = os.stat(full)
    except FileNotFoundError:
        raise _problem(
            f"密钥文件不存在：{full}", f"secret file does not exist: {full}"
        ) from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise _problem(
            f"无法访问密钥文件：{full}", f"cannot access secret file {full}: {reason}"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise _problem(
            f"密钥路径不是普通文件：{full}", f"secret path is not a regular file: {full}"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise _problem(
            f"密钥文件权限过宽（{mode:04o}），同组和其他用户不得有任何权限，请执行 chmod 600 {full}",
            f"secret file {full} is open to group or others (mode {mode:04o}); "
            f"run chmod 600 on it",
        )
    if not os.access(full, os.R_OK):
        raise _problem(
            f"当前用户无法读取密钥文件：{full}", f"secret file is not readable by this user: {full}"
        )
    return full


SecretFile = Annotated[Path, BeforeValidator(_check_secret)]


# --------------------------------------------------------------------------
# Models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Venue(_Model):
    """The licensed venue (营业场所) as registered."""

    id: Text
    name: Text
    credit_code: Annotated[str, StringConstraints(strict=True)] | None = None
    address: Text | None = None
    licensed_terminals: Count
    licensed_servers: Count = 0

    @field_validator("credit_code")
    @classmethod
    def _code_format(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = uscc.compact(value)
        try:
            uscc.validate(code)
        except InvalidChecksum:
            # Issued codes with a wrong check character exist: VenueProfile
            # records a warning for a person to confirm instead of refusing.
            pass
        except InvalidLength:
            raise _problem(
                f"统一社会信用代码应为 18 位，实际 {len(code)} 位",
                f"unified social credit code must have 18 characters, got {len(code)}",
            ) from None
        except CodeError:
            raise _problem(
                "统一社会信用代码格式错误：前 8 位须为数字，其余为数字或除 I、O、Z、S、V 以外的大写字母",
                "malformed unified social credit code: the first 8 characters must be digits, "
                "the rest digits or capital letters other than I, O, Z, S, V",
            ) from None
        return code


class Forwarding(_Model):
    """How far the forwarding test may go (DUAL-UPLINK).

    ``syn``: hosts that gave no ICMP answer to the TTL-1 packet get one
    full-TTL TCP SYN to ``external_target`` (the only probe packet that
    leaves the café; turn it off where even that is unwanted). ``port``: the
    target's TCP port those packets use. ``follow_hops``: how many hops past
    each forwarder to follow (TTL 2 upwards) to learn where its line leads;
    0, the default, sends nothing past a forwarder.
    """

    syn: Annotated[bool, Field(strict=True)] = True
    port: Annotated[int, Field(strict=True, ge=1, le=65535)] = 80
    follow_hops: Annotated[int, Field(strict=True, ge=0, le=8)] = 0


class Network(_Model):
    """The café LAN(s) and the registered infrastructure on them."""

    subnets: list[Network4] = Field(min_length=1)
    probe_address: Interface4 | None = None
    gateways: Annotated[list[Address4], BeforeValidator(_none_is_empty_list)] = Field(
        default_factory=list
    )
    dhcp_servers: Annotated[list[Address4], BeforeValidator(_none_is_empty_list)] = Field(
        default_factory=list
    )
    external_target: Address4 | None = None
    # The first addresses past the registered gateways (the ISP's next hop of each registered line),
    # as the forwarding test sees them when it follows a forwarder; empty: not registered.
    egress: Annotated[list[Address4], BeforeValidator(_none_is_empty_list)] = Field(default_factory=list)
    forwarding: Annotated[Forwarding, BeforeValidator(_none_is_empty_dict)] = Field(default_factory=Forwarding)
    # The registered gateways' MACs (address -> MAC), as the technician noted them on site; optional. A
    # headless probe tells apart venues that share one LAN plan by them (see probe/venue_match.py).
    gateway_macs: Annotated[dict[Address4, str], BeforeValidator(_none_is_empty_dict)] = Field(
        default_factory=dict
    )

    @field_validator("gateway_macs", mode="before")
    @classmethod
    def _gateway_macs(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[Any, str] = {}
        items: list[tuple[tuple[str | int, ...], str, str]] = []
        for key, mac in value.items():
            norm, reason = _check_mac(mac)
            if reason is not None:
                items.append(((str(key),), reason[0], reason[1]))
                continue
            out[key] = norm
        if items:
            raise _problems(items)
        return out

    @field_validator("subnets")
    @classmethod
    def _no_overlap(cls, subnets: list[IPv4Network]) -> list[IPv4Network]:
        items: list[tuple[tuple[str | int, ...], str, str]] = []
        # Sorted by start, a network overlaps an earlier one exactly when it
        # starts before the furthest end seen so far: O(n log n), not O(n²).
        order = sorted(range(len(subnets)), key=lambda k: (subnets[k].network_address, k))
        reach: int | None = None  # index of the network reaching furthest so far
        for k in order:
            here = subnets[k]
            if reach is not None and here.network_address <= subnets[reach].broadcast_address:
                i, j = sorted((reach, k))
                items.append(
                    (
                        (j,),
                        f"与 subnets[{i}]（{subnets[i]}）重叠",
                        f"{subnets[j]} overlaps subnets[{i}] ({subnets[i]})",
                    )
                )
            if reach is None or here.broadcast_address > subnets[reach].broadcast_address:
                reach = k
        items.sort(key=lambda item: item[0])
        if items:
            raise _problems(items)
        return subnets

    def subnet_of(self, address: IPv4Address) -> IPv4Network | None:
        """The registered subnet holding ``address``, or None."""
        return next((net for net in self.subnets if address in net), None)


class Terminals(_Model):
    """How terminals are numbered: names, addresses and the staged MAC table."""

    hostname_pattern: Annotated[str, StringConstraints(strict=True, min_length=1)] | None = None
    first_address: Address4
    mac_table: Annotated[dict[str, MachineNumber], BeforeValidator(_none_is_empty_dict)] = Field(
        default_factory=dict
    )

    @field_validator("hostname_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value, re.IGNORECASE)
        except (re.error, OverflowError, RecursionError, ValueError) as exc:
            raise _problem(
                "不是有效的正则表达式", f"not a valid regular expression: {exc}"
            ) from None
        if "number" not in compiled.groupindex:
            raise _problem(
                "正则表达式必须包含命名分组 (?P<number>…) 来取出机器编号",
                r"the regular expression must have a named group (?P<number>\d+) that "
                "captures the machine number",
            )
        return value

    @field_validator("mac_table", mode="before")
    @classmethod
    def _macs(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # pydantic reports the type
        items: list[tuple[tuple[str | int, ...], str, str]] = []
        out: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for key, number in value.items():
            mac, reason = _check_mac(key)
            if reason is not None:
                items.append(((str(key),), *reason))
                continue
            assert mac is not None
            if mac in out:
                items.append(
                    (
                        (key,),
                        f"与 {spelled[mac]} 是同一个 MAC（{mac}）",
                        f"same MAC ({mac}) as {spelled[mac]!r}",
                    )
                )
                continue
            out[mac] = number
            spelled[mac] = key
        if items:
            raise _problems(items)
        return out

    @field_validator("mac_table")
    @classmethod
    def _numbers_unique(cls, table: dict[str, int]) -> dict[str, int]:
        owner: dict[int, str] = {}
        items: list[tuple[tuple[str | int, ...], str, str]] = []
        for mac, number in table.items():
            if number in owner:
                items.append(
                    (
                        (mac,),
                        f"机器编号 {number} 已分配给 {owner[number]}",
                        f"machine number {number} is already given to {owner[number]}",
                    )
                )
            else:
                owner[number] = mac
        if items:
            raise _problems(items)
        return table

    def machine_number(self, name: str) -> int | None:
        """Machine number in a NetBIOS/DHCP name, by ``hostname_pattern``.

        The whole name must match (case-insensitively); returns None when it
        does not, or when the ``number`` group is not plain ASCII digits.
        """
        if self.hostname_pattern is None or not isinstance(name, str):
            return None
        match = re.fullmatch(self.hostname_pattern, name, re.IGNORECASE)
        digits = match.group("number") if match else None
        if not digits or not (digits.isascii() and digits.isdigit()):
            return None
        try:
            return int(digits)
        except ValueError:  # beyond int()'s digit limit: no real machine
            return None

    def expected_address(self, number: int) -> IPv4Address | None:
        """``first_address + number - 1``; None outside the IPv4 space."""
        value = int(self.first_address) + int(number) - 1
        if 0 <= value <= 0xFFFFFFFF:
            return IPv4Address(value)
        return None


class ServiceRef(_Model):
    """A registered server: billing (计费) or audit (审计)."""

    address: Address4
    product: Text


_HOST_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)

# Any day with day-of-month > 12 tells %m and %d apart on the way back.
_SAMPLE_DAY = date(2024, 11, 23)


class LogPath(_Model):
    """One folder (or file) of logs to list over SFTP."""

    path: Text
    name_pattern: Annotated[str, StringConstraints(strict=True, min_length=1)] | None = None
    recursive: Annotated[bool, Field(strict=True)] = False

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if "\x00" in value:
            raise _problem("路径中含有空字符", "path contains a NUL character")
        return value

    @field_validator("name_pattern")
    @classmethod
    def _name_pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # The pattern is only useful if a file name made from a day can be
        # read back to that same day, so try exactly that.
        try:
            name = datetime(_SAMPLE_DAY.year, _SAMPLE_DAY.month, _SAMPLE_DAY.day).strftime(value)
            back = datetime.strptime(name, value).date()
        except Exception as exc:  # noqa: BLE001 - strftime/strptime raise many kinds
            raise _problem(
                "不是有效的 strftime 文件名模式",
                f"not a usable strftime pattern: {type(exc).__name__}: {exc}",
            ) from None
        if back != _SAMPLE_DAY:
            raise _problem(
                "文件名模式必须能确定具体日期（需要 %Y %m %d 或 %Y %j）",
                "the file name pattern must identify a day (use %Y, %m and %d, or %Y and %j), "
                f"e.g. billing-%Y%m%d.log; {_SAMPLE_DAY} reads back as {back}",
            )
        return value


class LogSource(_Model):
    """A server whose logs the probe lists read-only over SFTP."""

    address: Address4
    port: Annotated[int, Field(strict=True, ge=1, le=65535)] = 22
    username: Text
    password_file: SecretFile | None = None
    key_file: SecretFile | None = None
    host_key: Annotated[str, StringConstraints(strict=True)] | None = None
    paths: list[LogPath] = Field(min_length=1)

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split()
        example = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA..."
        if len(parts) not in (2, 3) or parts[0] not in _HOST_KEY_TYPES:
            raise _problem(
                f"主机公钥格式应为“类型 base64”，例如 {example}",
                f"host key must be '<type> <base64>' like {example} "
                f"(types: {', '.join(sorted(_HOST_KEY_TYPES))})",
            )
        kind, blob_text = parts[0], parts[1]
        try:
            blob = base64.b64decode(blob_text, validate=True)
            (length,) = struct.unpack(">I", blob[:4])
            inner = blob[4 : 4 + length].decode("ascii")
        except (binascii.Error, ValueError, struct.error):
            raise _problem(
                "主机公钥的 base64 部分无效", "the base64 part of the host key is not valid"
            ) from None
        if inner != kind:
            raise _problem(
                f"主机公钥内容是 {inner!r}，与声明的类型 {kind} 不符",
                f"the key data is of type {_show(inner)}, not {kind} as written",
            )
        return f"{kind} {blob_text}"  # the comment, if any, is not part of the pin

    @model_validator(mode="after")
    def _one_credential(self) -> LogSource:
        if (self.password_file is None) == (self.key_file is None):
            both = self.password_file is not None
            raise _problem(
                "password_file 和 key_file 只能写一个" if both else "需要 password_file 或 key_file 之一",
                "give exactly one of password_file and key_file"
                + (", not both" if both else ""),
            )
        return self


def _protocol_token(aliases: dict[str, str]):
    def normalise(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        token = value.strip().lower().replace("-", "").replace("_", "")
        return aliases.get(token, token)

    return BeforeValidator(normalise)


AuthProtocol = Annotated[
    Literal["md5", "sha", "sha224", "sha256", "sha384", "sha512"],
    _protocol_token({"sha1": "sha"}),
]
PrivProtocol = Annotated[
    Literal["des", "3des", "aes128", "aes192", "aes256"],
    _protocol_token({"aes": "aes128", "tripledes": "3des"}),
]


class SnmpV3(_Model):
    """SNMPv3 user credentials; priv_key_file absent means authNoPriv."""

    user: Text
    auth_key_file: SecretFile
    priv_key_file: SecretFile | None = None
    auth_protocol: AuthProtocol = "sha"
    priv_protocol: PrivProtocol = "aes128"


class SnmpTarget(_Model):
    """A router or switch the probe may read (never write) over SNMP."""

    address: Address4
    community_file: SecretFile | None = None
    v3: SnmpV3 | None = None
    role: Literal["router", "switch", "other"] = "other"
    # Registered Internet lines on this router: more up WAN interfaces or default routes fail DUAL-UPLINK.
    uplinks: Annotated[int, Field(strict=True, ge=1)] = 1

    @model_validator(mode="after")
    def _one_credential(self) -> SnmpTarget:
        if (self.community_file is None) == (self.v3 is None):
            both = self.community_file is not None
            raise _problem(
                "community_file（v2c）和 v3 只能写一个" if both else "需要 community_file（v2c）或 v3 之一",
                "give exactly one of community_file (v2c) and v3" + (", not both" if both else ""),
            )
        return self


class Servers(_Model):
    """Registered servers and the credentials to read what they keep."""

    billing: Annotated[list[ServiceRef], BeforeValidator(_none_is_empty_list)] = Field(
        default_factory=list
    )
    audit: Annotated[list[ServiceRef], BeforeValidator(_none_is_empty_list)] = Field(
        default_factory=list
    )
    cameras: Count = 0
    nvrs: Count = 0
    # The venue's own products as they show on the LAN; one with a shipped id replaces it (probe/signatures.py).
    signatures: Annotated[list[Signature], BeforeValidator(_none_is_empty_list)] = Field(default_factory=list)
    log_sources: Annotated[list[LogSource], BeforeValidator(_none_is_empty_list)] = Field(
        default_factory=list
    )
    snmp: Annotated[list[SnmpTarget], BeforeValidator(_none_is_empty_list)] = Field(
        default_factory=list
    )


class VenueProfile(_Model):
    """A whole venue profile. ``warnings`` lists what a person should confirm."""

    venue: Venue
    network: Network
    terminals: Terminals
    servers: Annotated[Servers, BeforeValidator(_none_is_empty_dict)] = Field(
        default_factory=Servers
    )

    # Not a field: derived on validation, so a profile cannot set it.
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """Lines in the ProfileError style for things that load but look wrong."""
        return self._warnings

    @model_validator(mode="after")
    def _cross_check(self) -> VenueProfile:
        net = self.network
        items: list[tuple[tuple[str | int, ...], str, str]] = []
        listed = ", ".join(str(s) for s in net.subnets)

        first = self.terminals.first_address
        home = net.subnet_of(first)
        if home is None:
            items.append(
                (
                    ("terminals", "first_address"),
                    f"{first} 不在 network.subnets（{listed}）之内",
                    f"{first} is not inside network.subnets ({listed})",
                )
            )
        elif home.prefixlen <= 30 and first in (home.network_address, home.broadcast_address):
            items.append(
                (
                    ("terminals", "first_address"),
                    f"{first} 是网段 {home} 的网络地址或广播地址",
                    f"{first} is the network or broadcast address of {home}",
                )
            )
        if net.probe_address is not None:
            ip = net.probe_address.ip
            if net.subnet_of(ip) is None:
                items.append(
                    (
                        ("network", "probe_address"),
                        f"{ip} 不在 network.subnets（{listed}）之内",
                        f"{ip} is not inside network.subnets ({listed})",
                    )
                )
        for address in net.gateway_macs:
            if address not in net.gateways:
                items.append(
                    (
                        ("network", "gateway_macs", str(address)),
                        f"{address} 不在 network.gateways 中",
                        f"{address} is not one of network.gateways",
                    )
                )
        if net.external_target is not None and net.subnet_of(net.external_target) is not None:
            # A forwarding test towards a LAN address proves nothing about uplinks.
            items.append(
                (
                    ("network", "external_target"),
                    f"{net.external_target} 在场所网段之内，转发测试需要外部地址",
                    f"{net.external_target} is inside the café subnets; the forwarding test "
                    "needs an outside address",
                )
            )
        if items:
            raise _problems(items)

        warnings: list[str] = []
        code = self.venue.credit_code
        if code is not None and not uscc.is_valid(code):
            expected = uscc.calc_check_digit(code)
            warnings.append(
                _line(
                    ("venue", "credit_code"),
                    f"统一社会信用代码校验位不符（按 GB 32100-2015 应为 {expected}），请人工核对",
                    f"check character of the unified social credit code does not match "
                    f"(GB 32100-2015 gives {expected}); have a person confirm the code",
                )
            )
        count = self.venue.licensed_terminals
        if count > 0 and home is not None:
            last = self.terminals.expected_address(count)
            if last is None or last not in home or (
                home.prefixlen <= 30 and last == home.broadcast_address
            ):
                shown = last if last is not None else "255.255.255.255 之后 / beyond 255.255.255.255"
                warnings.append(
                    _line(
                        ("terminals", "first_address"),
                        f"按编号规则第 {count} 号机的地址（{shown}）超出网段 {home} 的可用地址",
                        f"by the numbering scheme machine {count} would get {shown}, "
                        f"not a usable address of {home}",
                    )
                )
        self._warnings = warnings
        return self

    def machine_number(self, name: str) -> int | None:
        """Machine number in a NetBIOS/DHCP name (see Terminals.machine_number)."""
        return self.terminals.machine_number(name)

    def expected_address(self, number: int) -> IPv4Address | None:
        """Address machine ``number`` must have: first_address + number - 1."""
        return self.terminals.expected_address(number)


# --------------------------------------------------------------------------
# Turning errors into lines


def _format_path(loc: Iterable[Any]) -> str:
    out = ""
    for seg in loc:
        if isinstance(seg, int) and not isinstance(seg, bool):
            out += f"[{seg}]"
        elif isinstance(seg, str) and seg == "[key]":
            out += "[key]"
        elif isinstance(seg, str) and seg.isidentifier():
            out += f".{seg}" if out else seg
        else:
            text = seg if isinstance(seg, str) else repr(seg)
            if len(text) > 60:
                text = text[:57] + "..."
            out += f"[{json.dumps(text, ensure_ascii=False)}]"
    return out or ROOT


def _line(loc: Iterable[Any], zh: str, en: str) -> str:
    return f"{_format_path(loc)}: {zh} / {en}"


# pydantic error type -> (Chinese, English); {names} come from the error's ctx.
_TRANSLATIONS: dict[str, tuple[str, str]] = {
    "extra_forbidden": ("未知的键", "unknown key"),
    "missing": ("缺少必填的键", "missing required key"),
    "invalid_key": ("键必须是字符串", "keys must be strings"),
    "int_type": ("必须是整数", "must be a whole number"),
    "int_parsing": ("必须是整数", "must be a whole number"),
    "int_from_float": ("必须是整数", "must be a whole number"),
    "string_type": (
        "必须是字符串（会被 YAML 读成数字、日期或布尔值的内容请加引号）",
        "must be a string (quote values YAML would read as numbers, dates or booleans)",
    ),
    "string_too_short": ("不能为空", "must not be empty"),
    "bool_type": ("必须是 true 或 false", "must be true or false"),
    "bool_parsing": ("必须是 true 或 false", "must be true or false"),
    "list_type": ("必须是列表", "must be a list"),
    "dict_type": ("必须是映射（键: 值）", "must be a mapping (key: value)"),
    "model_type": ("必须是映射（键: 值）", "must be a mapping (key: value)"),
    "model_attributes_type": ("必须是映射（键: 值）", "must be a mapping (key: value)"),
    "too_short": ("至少需要 {min_length} 项", "needs at least {min_length} item(s)"),
    "greater_than_equal": ("必须大于或等于 {ge}", "must be >= {ge}"),
    "greater_than": ("必须大于 {gt}", "must be > {gt}"),
    "less_than_equal": ("必须小于或等于 {le}", "must be <= {le}"),
    "less_than": ("必须小于 {lt}", "must be < {lt}"),
    "literal_error": ("必须是以下之一：{expected}", "must be one of {expected}"),
    "recursion_loop": ("存在循环引用（YAML 锚点）", "cyclic reference (YAML anchors)"),
}


def _translate(error: dict[str, Any]) -> list[str]:
    loc = error.get("loc", ())
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind == _MANY:
        return [_line((*loc, *sub), zh, en) for sub, zh, en in ctx["items"]]
    if kind == _ONE:
        return [_line(loc, ctx["zh"], ctx["en"])]
    msg = str(error.get("msg", ""))
    if kind in _TRANSLATIONS:
        zh, en = _TRANSLATIONS[kind]
        try:
            return [_line(loc, zh.format(**ctx), en.format(**ctx))]
        except (KeyError, IndexError, ValueError):
            return [_line(loc, zh, en)]
    if kind == "value_error":
        return [_line(loc, "值无效", "invalid value: " + msg.removeprefix("Value error, "))]
    return [_line(loc, "值无效", msg)]


# --------------------------------------------------------------------------
# YAML 1.1 traps that safe_load resolves silently

_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _scalar_trap(node: yaml.ScalarNode) -> tuple[str, str] | None:
    if node.style is not None or node.tag not in (_INT_TAG, _FLOAT_TAG):
        return None
    text = node.value.replace("_", "")
    if ":" in text:
        return (
            f"YAML 1.1 会把未加引号的 {node.value} 读成六十进制数，请加引号",
            f"YAML 1.1 reads unquoted {_show(node.value)} as a base-60 number; put it in quotes",
        )
    octal = re.fullmatch(r"[-+]?0([0-7]+)", text)
    if node.tag == _INT_TAG and octal and int(octal.group(1), 8) != int(octal.group(1)):
        as_octal = int(octal.group(1), 8)
        return (
            f"YAML 1.1 会把未加引号的 {node.value} 读成八进制数 {as_octal}，请去掉前导 0 或加引号",
            f"YAML 1.1 reads unquoted {_show(node.value)} as the octal number {as_octal}; "
            "drop the leading zeros or quote it",
        )
    return None


def _yaml_traps(text: str) -> list[str]:
    """Duplicate keys and numbers YAML 1.1 reads in base 8 or 60.

    safe_load accepts both without a word: a duplicated MAC in mac_table
    simply loses an entry, and machine 010 becomes machine 8.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return []  # the caller's safe_load reports it
    found: list[tuple[int, str]] = []
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())] if root is not None else []
    seen: set[int] = set()
    while stack:
        node, loc = stack.pop()
        if id(node) in seen:  # anchors share nodes, and may even form cycles
            continue
        seen.add(id(node))
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            keys: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if key.tag == _MERGE_TAG:
                    stack.append((value, loc))
                    continue
                seg = key.value if isinstance(key, yaml.ScalarNode) else "?"
                here = (*loc, seg)
                if isinstance(key, yaml.ScalarNode):
                    ident = (key.tag, key.value)
                    key_line = key.start_mark.line + 1
                    if ident in keys:
                        found.append(
                            (
                                key_line,
                                _line(
                                    here,
                                    f"重复的键（第 {keys[ident]} 行和第 {key_line} 行），YAML 只会保留后一个",
                                    f"duplicate key (lines {keys[ident]} and {key_line}); "
                                    "YAML would silently keep only the last one",
                                ),
                            )
                        )
                    else:
                        keys[ident] = key_line
                    trap = _scalar_trap(key)
                    if trap:
                        found.append((key_line, _line(here, *trap)))
                stack.append((value, here))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*loc, i)) for i, item in enumerate(node.value))
        elif isinstance(node, yaml.ScalarNode):
            trap = _scalar_trap(node)
            if trap:
                found.append((line, _line(loc, *trap)))
    found.sort(key=lambda pair: pair[0])
    return [text for _, text in found]


# --------------------------------------------------------------------------
# Entry points


def _parse(text: str, base_dir: Path, source: str) -> VenueProfile:
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or exc.context or "unknown problem"
        if mark is not None:
            line, col = mark.line + 1, mark.column + 1
            raise ProfileError(
                [
                    f"{source}: 第 {line} 行第 {col} 列 YAML 语法错误 / "
                    f"YAML syntax error at line {line}, column {col}: {reason}"
                ]
            ) from None
        raise ProfileError([f"{source}: YAML 语法错误 / YAML syntax error: {reason}"]) from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProfileError([f"{source}: YAML 语法错误 / YAML syntax error: {first}"]) from None
    except RecursionError:
        raise ProfileError(
            [f"{source}: YAML 嵌套过深 / YAML nested too deeply to read"]
        ) from None
    except Exception as exc:  # noqa: BLE001
        # PyYAML's constructors leak plain ValueError/AttributeError for
        # values like "2024-13-01" or "!!int abc"; they are still bad input.
        raise ProfileError(
            [
                f"{source}: YAML 中有无法解析的值 / YAML value could not be read: "
                f"{type(exc).__name__}: {_show(str(exc), 120)}"
            ]
        ) from None

    if data is None:
        raise ProfileError([f"{source}: 配置为空 / the profile is empty"])
    if not isinstance(data, dict):
        zh_kind, en_kind = _kind(data)
        raise ProfileError(
            [
                f"{source}: 顶层必须是映射（venue:、network: 等），实际是{zh_kind} / "
                f"the top level must be a mapping (venue:, network:, ...), got {en_kind}"
            ]
        )

    problems = _yaml_traps(text)
    try:
        profile = VenueProfile.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            problems.extend(_translate(error))
        raise ProfileError(problems) from None
    except RecursionError:
        raise ProfileError(
            problems + [f"{source}: 配置嵌套过深 / the profile is nested too deeply"]
        ) from None
    if problems:
        raise ProfileError(problems)
    return profile


def parse_profile(text: str, base_dir: str | Path) -> VenueProfile:
    """Validate profile ``text``; relative secret paths resolve in ``base_dir``.

    Raises ProfileError (and nothing else) listing every problem found.
    """
    return _parse(text, Path(os.path.abspath(base_dir)), ROOT)


def _read(path: str | Path) -> tuple[Path, bytes]:
    p = Path(path)
    try:
        with open(p, "rb") as handle:
            data = handle.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ProfileError([f"{p}: 无法读取文件 / cannot read file: {reason}"]) from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise ProfileError([f"{_show(str(p))}: 无效的文件路径 / invalid file path: {exc}"]) from None
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(
            [
                f"{p}: 文件超过 {MAX_PROFILE_BYTES // 1024} KiB，不像场所配置 / "
                f"file larger than {MAX_PROFILE_BYTES // 1024} KiB; not a venue profile"
            ]
        )
    return p, data


def load_profile(path: str | Path) -> VenueProfile:
    """Read and validate the profile at ``path``.

    Secret paths in it are relative to the file's directory. Raises
    ProfileError (and nothing else) for an unreadable file, bad UTF-8, bad
    YAML, a bad profile or a missing or non-private secret file.
    """
    p, data = _read(path)
    try:
        # utf-8-sig: Windows Notepad saves UTF-8 with a byte-order mark.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProfileError(
            [
                f"{p}: 不是 UTF-8 编码（第 {exc.start} 字节起），请另存为 UTF-8 / "
                f"not UTF-8 (from byte {exc.start}); save the file as UTF-8"
            ]
        ) from None
    return _parse(text, Path(os.path.abspath(p)).parent, str(p))


def profile_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the profile file's bytes, as recorded in observations."""
    _, data = _read(path)
    return hashlib.sha256(data).hexdigest()
