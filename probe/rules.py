"""The ruleset: check catalogue, legal provisions and result types from ``rules/``.

``rules/`` is data (YAML) that technicians maintain; this module loads it,
refuses anything inconsistent before a run starts, and dresses check verdicts
with its words and legal basis. Files read (all under one directory):

* ``ruleset.yaml`` — ``version`` and ``description``;
* ``legal.yaml`` — the provisions, each valid on a date range;
* ``result_types.yaml`` — the official result types with stable codes;
* ``catalogue.yaml`` — one entry per check ID;
* ``foreign_routers.yaml`` — common router addresses the probe asks for by ARP;
* ``signatures/*.yaml`` — service signatures (:mod:`probe.signatures`).

Other ``*.yaml`` files there (signatures, holiday tables) have their own
loaders, but they are covered by :attr:`Ruleset.sha256` all the same, so a
report names exactly the data it was judged with.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import string
import unicodedata
from datetime import date, datetime, timedelta
from importlib import resources
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from probe.findings import Citation, Finding, Status, Verdict
from probe.signatures import Signature, SignatureError, load_signature_files

__all__ = [
    "RULES_ENV",
    "CheckRule",
    "Message",
    "Provision",
    "ResultType",
    "Ruleset",
    "RulesError",
    "load_ruleset",
    "ruleset_sha256",
]

RULES_ENV = "CAFE_PROBE_RULES"
"""Environment variable naming a rules directory to use instead of the shipped one."""

_RULESET_FILE = "ruleset.yaml"
_LEGAL_FILE = "legal.yaml"
_RESULT_TYPES_FILE = "result_types.yaml"
_CATALOGUE_FILE = "catalogue.yaml"
_FOREIGN_ROUTERS_FILE = "foreign_routers.yaml"

# IDs appear in reports, exports and file names: keep them to a plain alphabet.
_CHECK_ID = re.compile(r"^[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*$")
_PROVISION_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RulesError(Exception):
    """The ruleset is unusable, or a caller asked it for something it lacks.

    ``problems`` holds one line per problem, naming the file and key (when
    loading) or the check and reason (when rendering), so that a technician
    can fix them all in one pass.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class _Data(BaseModel):
    """Base of the file models: unknown keys are errors (a typo must not vanish)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Provision(_Data):
    """One legal provision, valid from ``in_force_from`` to ``in_force_until`` inclusive.

    ``None`` at either end means open: from the text's entry into force, or
    still in force. ``article`` is ``None`` when the number is not known and
    the text is cited by name only.
    """

    id: str
    law: str = Field(description="Chinese full name of the text, with its 令号 where it has one")
    article: str | None = Field(description="Chinese form, e.g. 第二十四条第（五）项")
    article_arabic: str | None = Field(description='arabic form, e.g. "24(5)"')
    in_force_from: date | None
    in_force_until: date | None
    verified: Literal["V", "P", "M"] = Field(
        description="V verified, P substance only, M unverified (LEGAL.md marks)"
    )
    replaced_by: str | None = Field(
        default=None, description="provision id that takes over the day after in_force_until"
    )
    note: str

    def in_force(self, on: date) -> bool:
        """Whether this provision applies to an inspection on ``on``."""
        return (self.in_force_from is None or self.in_force_from <= on) and (
            self.in_force_until is None or on <= self.in_force_until
        )

    def citation(self) -> Citation:
        """The provision as a finding cites it (Chinese article form, for the zh-CN case file)."""
        return Citation(
            law=self.law,
            article=self.article,
            in_force_from=self.in_force_from,
            in_force_until=self.in_force_until,
            verified=self.verified,
            note=self.note,
        )


class ResultType(_Data):
    """An official spot-check result type: stable ``code``, the seed's ``zh`` wording."""

    code: str
    zh: str
    en: str
    aliases: list[str] = Field(
        default_factory=list, description="other wordings accepted on import"
    )
    legal_basis: list[str] = Field(default_factory=list)


class Message(_Data):
    """One reason's words: ``str.format`` templates filled with a verdict's values."""

    status: Status = Field(description="the status a verdict with this reason must carry")
    zh: str
    en: str

    def placeholders(self) -> set[str]:
        """Names used in the templates (valid templates only; the loader checks them)."""
        return _placeholders(self.zh) | _placeholders(self.en)


class CheckRule(_Data):
    """A catalogue entry: everything about a check except its decision logic."""

    id: str
    kind: Literal["automatic", "manual"]
    title_zh: str
    title_en: str
    description: str
    pending: bool = Field(
        default=False, description="automatic check with no module in this probe version"
    )
    thresholds: dict[str, Any] = Field(default_factory=dict)
    legal_basis: list[str]
    result_type_on_fail: str
    messages: dict[str, Message]


class _RulesetFile(_Data):
    version: str = Field(min_length=1)
    description: str


class _LegalFile(_Data):
    texts: dict[str, str]
    provisions: dict[str, dict[str, Any]]


class _ResultTypesFile(_Data):
    result_types: dict[str, dict[str, Any]]


class _CatalogueFile(_Data):
    general_legal_basis: list[str] = Field(default_factory=list)
    templates: dict[str, Message] = Field(default_factory=dict)
    checks: dict[str, dict[str, Any]]


class _ForeignRoutersFile(_Data):
    router_addresses: list[IPv4Address] = Field(min_length=1)


class Ruleset(BaseModel):
    """A loaded, validated ruleset. Build it with :func:`load_ruleset`.

    ``sha256`` identifies the data a report was judged with: SHA-256 over one
    line per ``*.yaml`` file under the rules directory, sorted by relative
    POSIX path, each line ``<path> NUL <hex SHA-256 of the file> LF``
    (details and a shell one-liner: :func:`ruleset_sha256`).
    """

    model_config = ConfigDict(frozen=True)

    version: str
    description: str
    sha256: str = Field(description="see ruleset_sha256 for the recipe")
    root: Path = Field(description="the rules directory it was loaded from")
    checks: dict[str, CheckRule]
    provisions: dict[str, Provision]
    result_types: dict[str, ResultType] = Field(description="by code")
    general_legal_basis: list[str] = Field(
        description="provisions behind the inspection itself, cited once per report"
    )
    foreign_router_addresses: list[IPv4Address] = Field(
        description="common default router addresses of private ranges, asked for by ARP (FOREIGN-SUBNET)"
    )
    signatures: list[Signature] = Field(description="service signatures of rules/signatures/*.yaml")

    def check(self, check_id: str) -> CheckRule:
        """The catalogue entry of ``check_id``; RulesError if there is none."""
        try:
            return self.checks[check_id]
        except KeyError:
            raise RulesError(f"{check_id}: no such check in {_CATALOGUE_FILE}") from None

    def citations(self, check_id: str, on: date) -> list[Citation]:
        """The legal basis of ``check_id`` as in force on the inspection date ``on``.

        A provision applies when ``in_force_from <= on`` and (``in_force_until``
        is open or ``on <= in_force_until``); catalogue order is kept.
        """
        return self._cite(self.check(check_id).legal_basis, _as_date(on))

    def general_citations(self, on: date) -> list[Citation]:
        """The provisions behind the inspection itself, as in force on ``on``."""
        return self._cite(self.general_legal_basis, _as_date(on))

    def render(self, check_id: str, verdict: Verdict, on: date) -> Finding:
        """Dress a check's verdict with the catalogue's words and the law of the day.

        The summaries are ``messages[verdict.reason]`` formatted with
        ``verdict.values``; the suggested result type is set only on failure.
        Raises RulesError naming the check and reason when the reason has no
        message, a placeholder has no value, or the verdict's status is not
        the one the catalogue gives that reason (a check and its catalogue
        entry that disagree must not produce a report).
        """
        rule = self.check(check_id)
        message = rule.messages.get(verdict.reason)
        if message is None:
            raise RulesError(
                f"{check_id}: no message for reason {verdict.reason!r} in {_CATALOGUE_FILE}"
            )
        if message.status != verdict.status:
            raise RulesError(
                f"{check_id}: reason {verdict.reason!r} is {message.status.value} in "
                f"{_CATALOGUE_FILE}, but the verdict says {verdict.status.value}"
            )
        summary_zh = _fill(check_id, verdict.reason, "zh", message.zh, verdict.values)
        summary_en = _fill(check_id, verdict.reason, "en", message.en, verdict.values)
        return Finding(
            check_id=check_id,
            status=verdict.status,
            title_zh=rule.title_zh,
            title_en=rule.title_en,
            summary_zh=summary_zh,
            summary_en=summary_en,
            evidence=dict(verdict.evidence),
            legal_basis=self.citations(check_id, on),
            result_type=rule.result_type_on_fail if verdict.status is Status.FAIL else None,
        )

    def require_modules(self, module_ids: set[str]) -> None:
        """Refuse to run when check modules and the catalogue disagree.

        Every non-pending automatic entry needs a module; every module needs
        an entry, and that entry must be automatic and not pending. All
        disagreements are reported at once in RulesError.problems.
        """
        problems: list[str] = []
        for check_id, rule in self.checks.items():
            if rule.kind == "automatic" and not rule.pending and check_id not in module_ids:
                problems.append(
                    f"{check_id}: catalogue check is automatic and not pending, but has no module"
                )
        for module_id in sorted(module_ids):
            rule = self.checks.get(module_id)
            if rule is None:
                problems.append(f"{module_id}: module has no entry in {_CATALOGUE_FILE}")
            elif rule.kind == "manual":
                problems.append(f"{module_id}: module exists, but the catalogue entry is manual")
            elif rule.pending:
                problems.append(
                    f"{module_id}: module exists, but the catalogue entry is pending "
                    "(set pending: false)"
                )
        if problems:
            raise RulesError(problems)

    def result_type(self, label_or_code: str) -> ResultType:
        """Look a result type up by code, zh wording, alias or English label.

        Matching ignores Unicode width (NFKC), case and whitespace, since
        imports come from platforms that mix full- and half-width brackets.
        """
        wanted = _label_key(label_or_code)
        for result_type in self.result_types.values():
            if wanted in {_label_key(label) for label in _labels(result_type)}:
                return result_type
        raise RulesError(f"{label_or_code!r}: no such result type in {_RESULT_TYPES_FILE}")

    def _cite(self, ids: list[str], on: date) -> list[Citation]:
        return [self.provisions[i].citation() for i in ids if self.provisions[i].in_force(on)]


def ruleset_sha256(root: Path) -> str:
    """SHA-256 over the content of a rules directory, as reports carry it.

    Recipe: take every ``*.yaml`` file under ``root`` (recursively), sorted by
    its path relative to ``root`` in POSIX form (compared as strings, which
    for UTF-8 is byte order); for each, write the relative path (UTF-8), a
    NUL byte, the lowercase hex SHA-256 of the file's bytes and a newline;
    the result is the hex SHA-256 of all those lines. In a shell::

        cd rules && find . -name '*.yaml' -type f | sed 's|^\\./||' | LC_ALL=C sort |
          while IFS= read -r f; do
            printf '%s\\0%s\\n' "$f" "$(sha256sum < "$f" | cut -d' ' -f1)"
          done | sha256sum

    Only content counts: file times, modes and non-YAML files (the package's
    ``__init__.py``) do not.
    """
    return _digest(_read_tree(Path(root)))


def load_ruleset(path: Path | None = None) -> Ruleset:
    """Load and validate a rules directory.

    ``path`` defaults to the directory named by ``$CAFE_PROBE_RULES`` and, if
    that is unset, to the shipped ``rules`` package. Everything is checked
    before anything is returned: unknown keys, legal-basis ids, result-type
    codes, message templates (zh and en, parseable, same placeholders),
    ``pending`` only on automatic checks, thresholds as plain data, and that
    renumbered provisions are cited together with their successors. Raises
    RulesError listing every problem found.
    """
    root = rules_directory(path)
    tree = _read_tree(root)
    problems: list[str] = []

    raw = {name: _parse(name, tree, problems) for name in
           (_RULESET_FILE, _LEGAL_FILE, _RESULT_TYPES_FILE, _CATALOGUE_FILE, _FOREIGN_ROUTERS_FILE)}
    header = _validate(_RulesetFile, raw[_RULESET_FILE], _RULESET_FILE, "", problems)
    legal = _validate(_LegalFile, raw[_LEGAL_FILE], _LEGAL_FILE, "", problems)
    types_file = _validate(_ResultTypesFile, raw[_RESULT_TYPES_FILE], _RESULT_TYPES_FILE, "",
                           problems)
    catalogue = _validate(_CatalogueFile, raw[_CATALOGUE_FILE], _CATALOGUE_FILE, "", problems)
    foreign = _validate(_ForeignRoutersFile, raw[_FOREIGN_ROUTERS_FILE], _FOREIGN_ROUTERS_FILE, "", problems)

    # When a file failed, skip the cross-references into it (None below):
    # its own problems are listed already, and a flood of "unknown id" lines
    # would bury them.
    provisions = _load_provisions(legal, problems) if legal else None
    result_types = (_load_result_types(types_file, provisions, problems)
                    if types_file else None)
    checks: dict[str, CheckRule] = {}
    if catalogue:
        _check_templates(_CATALOGUE_FILE, "templates", catalogue.templates, problems)
        _check_basis(_CATALOGUE_FILE, "general_legal_basis", catalogue.general_legal_basis,
                     provisions, problems)
        checks = _load_checks(catalogue, provisions, result_types, problems)

    try:
        signatures = load_signature_files(root / "signatures")
    except SignatureError as exc:
        problems.extend(f"signatures/{line}" for line in exc.problems)
        signatures = []
    if problems or not (header and catalogue and foreign) or provisions is None or result_types is None:
        raise RulesError(problems or [f"{root}: ruleset could not be loaded"])
    return Ruleset(
        version=header.version,
        description=header.description,
        sha256=_digest(tree),
        root=root,
        checks=checks,
        provisions=provisions,
        result_types=result_types,
        general_legal_basis=list(catalogue.general_legal_basis),
        foreign_router_addresses=list(dict.fromkeys(foreign.router_addresses)),
        signatures=signatures,
    )


# --------------------------------------------------------------------- loading


def rules_directory(path: Path | None) -> Path:
    """The rules directory: ``path``, else ``$CAFE_PROBE_RULES``, else the shipped ``rules`` package."""
    if path is None:
        env = os.environ.get(RULES_ENV)
        if env:
            path = Path(env)
        else:
            shipped = resources.files("rules")
            # A zipped install would give a Traversable that is not a directory
            # we can hash file by file; say so instead of failing obscurely.
            if not isinstance(shipped, Path):
                raise RulesError(
                    f"the rules package is not a directory on disk; set {RULES_ENV}"
                )
            path = shipped
    root = Path(path)
    if not root.is_dir():
        raise RulesError(f"{root}: rules directory not found")
    return root


def _read_tree(root: Path) -> dict[str, bytes]:
    # Read every file once: the hash and the parse see the same bytes, so a
    # report's sha256 is exactly the data the findings were judged with.
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*.yaml")
        if p.is_file()
    }


def _digest(tree: dict[str, bytes]) -> str:
    outer = hashlib.sha256()
    for rel in sorted(tree):
        inner = hashlib.sha256(tree[rel]).hexdigest()
        outer.update(rel.encode("utf-8") + b"\0" + inner.encode("ascii") + b"\n")
    return outer.hexdigest()


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML keeps the last silently)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _parse(name: str, tree: dict[str, bytes], problems: list[str]) -> dict[str, Any] | None:
    if name not in tree:
        problems.append(f"{name}: missing")
        return None
    try:
        stream = io.StringIO(tree[name].decode("utf-8"))
        stream.name = name  # PyYAML puts it in error marks: 'in "catalogue.yaml", line 3'
        data = yaml.load(stream, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as exc:
        problems.append(f"{name}: not UTF-8 ({exc})")
        return None
    except yaml.YAMLError as exc:
        problems.append(f"{name}: invalid YAML: {' '.join(str(exc).split())}")
        return None
    if not isinstance(data, dict):
        problems.append(f"{name}: top level must be a mapping")
        return None
    return data


def _validate(model, data, file: str, prefix: str, problems: list[str]):
    """Validate ``data`` as ``model``, turning pydantic errors into problem lines."""
    if data is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = ".".join(str(part) for part in error["loc"])
            where = ".".join(part for part in (prefix, loc) if part)
            problems.append(f"{file}: {where}: {error['msg']}")
        return None


def _load_provisions(legal: _LegalFile, problems: list[str]) -> dict[str, Provision]:
    provisions: dict[str, Provision] = {}
    for pid, entry in legal.provisions.items():
        if not _PROVISION_ID.match(pid):
            problems.append(
                f"{_LEGAL_FILE}: provisions.{pid}: id must be lowercase words joined by '-'"
            )
        provision = _validate(Provision, {"id": pid, **entry}, _LEGAL_FILE, f"provisions.{pid}",
                              problems)
        if provision is not None:
            provisions[pid] = provision
    known_laws = set(legal.texts.values())
    for pid, p in provisions.items():
        where = f"{_LEGAL_FILE}: provisions.{pid}"
        if p.law not in known_laws:
            problems.append(f"{where}: law {p.law!r} is not one of texts")
        if (p.article is None) != (p.article_arabic is None):
            problems.append(f"{where}: article and article_arabic must both be given or both null")
        if p.in_force_from and p.in_force_until and p.in_force_from > p.in_force_until:
            problems.append(f"{where}: in_force_from is after in_force_until")
        if p.replaced_by is not None:
            successor = provisions.get(p.replaced_by)
            if successor is None:
                problems.append(f"{where}: replaced_by {p.replaced_by!r} is not a provision")
            elif p.in_force_until is None:
                problems.append(f"{where}: replaced_by needs in_force_until")
            elif successor.in_force_from != p.in_force_until + timedelta(days=1):
                # A gap or an overlap would leave some inspection dates citing
                # nothing, or both numberings at once.
                problems.append(
                    f"{where}: {p.replaced_by} must be in force from the day after "
                    f"{p.in_force_until.isoformat()}"
                )
    return provisions


def _load_result_types(types_file: _ResultTypesFile, provisions: dict[str, Provision] | None,
                       problems: list[str]) -> dict[str, ResultType]:
    result_types: dict[str, ResultType] = {}
    owner: dict[str, str] = {}
    for code, entry in types_file.result_types.items():
        prefix = f"result_types.{code}"
        if not _CODE.match(code):
            problems.append(f"{_RESULT_TYPES_FILE}: {prefix}: code must be lowercase snake_case")
        rt = _validate(ResultType, {"code": code, **entry}, _RESULT_TYPES_FILE, prefix, problems)
        if rt is None:
            continue
        result_types[code] = rt
        _check_basis(_RESULT_TYPES_FILE, f"{prefix}.legal_basis", rt.legal_basis, provisions,
                     problems)
        # An import label must map to one type only.
        for label in _labels(rt):
            key = _label_key(label)
            if key in owner and owner[key] != code:
                problems.append(
                    f"{_RESULT_TYPES_FILE}: {prefix}: label {label!r} also names {owner[key]}"
                )
            owner.setdefault(key, code)
    return result_types


def _load_checks(catalogue: _CatalogueFile, provisions: dict[str, Provision] | None,
                 result_types: dict[str, ResultType] | None,
                 problems: list[str]) -> dict[str, CheckRule]:
    checks: dict[str, CheckRule] = {}
    for check_id, entry in catalogue.checks.items():
        prefix = f"checks.{check_id}"
        where = f"{_CATALOGUE_FILE}: {prefix}"
        if not _CHECK_ID.match(check_id):
            problems.append(f"{where}: check ID must be uppercase words joined by '-'")
        if "id" in entry and entry["id"] != check_id:
            problems.append(f"{where}: id {entry['id']!r} differs from its key")
        rule = _validate(CheckRule, {**entry, "id": check_id}, _CATALOGUE_FILE, prefix, problems)
        if rule is None:
            continue
        checks[check_id] = rule
        if rule.pending and rule.kind != "automatic":
            problems.append(f"{where}: pending applies to automatic checks only")
        if rule.kind == "automatic" and rule.pending:
            _require_message(where, rule, "pending", problems)
        if rule.kind == "manual":
            _require_message(where, rule, "manual", problems)
        if not rule.legal_basis:
            problems.append(f"{where}: legal_basis is empty")
        _check_basis(_CATALOGUE_FILE, f"{prefix}.legal_basis", rule.legal_basis, provisions,
                     problems)
        if result_types is not None and rule.result_type_on_fail not in result_types:
            problems.append(
                f"{where}: result_type_on_fail {rule.result_type_on_fail!r} is not a code in "
                f"{_RESULT_TYPES_FILE}"
            )
        for key, value in rule.thresholds.items():
            if not _is_plain(value):
                problems.append(
                    f"{where}.thresholds.{key}: must be plain data (numbers, strings, booleans, "
                    "null, lists and mappings of them)"
                )
        _check_templates(_CATALOGUE_FILE, f"{prefix}.messages", rule.messages, problems)
    return checks


def _require_message(where: str, rule: CheckRule, reason: str, problems: list[str]) -> None:
    message = rule.messages.get(reason)
    if message is None:
        problems.append(f"{where}: needs a {reason!r} message")
    elif message.status is not Status.MANUAL:
        problems.append(f"{where}.messages.{reason}: status must be manual")


def _check_basis(file: str, where: str, ids: list[str], provisions: dict[str, Provision] | None,
                 problems: list[str]) -> None:
    if provisions is None:  # legal.yaml itself failed; its problems are listed
        return
    cited = set(ids)
    for pid in ids:
        if ids.count(pid) > 1:
            problems.append(f"{file}: {where}: {pid} listed twice")
        p = provisions.get(pid)
        if p is None:
            problems.append(
                f"{file}: {where}: unknown or invalid provision {pid!r} (see {_LEGAL_FILE})"
            )
            continue
        # Cite old and new numbering together, or dates after (or before) the
        # renumbering would cite nothing.
        if p.replaced_by and p.replaced_by not in cited:
            problems.append(f"{file}: {where}: cites {pid} but not its successor {p.replaced_by}")
        predecessors = [q.id for q in provisions.values() if q.replaced_by == pid]
        if predecessors and not cited.intersection(predecessors):
            problems.append(
                f"{file}: {where}: cites {pid} but none of its predecessors "
                f"({', '.join(predecessors)})"
            )


def _check_templates(file: str, where: str, messages: dict[str, Message],
                     problems: list[str]) -> None:
    for reason, message in messages.items():
        at = f"{file}: {where}.{reason}"
        if not _CODE.match(reason):
            problems.append(f"{at}: reason must be lowercase snake_case")
        names: dict[str, set[str]] = {}
        for lang in ("zh", "en"):
            template = getattr(message, lang)
            if not template.strip():
                problems.append(f"{at}.{lang}: empty")
            try:
                names[lang] = _placeholders(template)
            except ValueError as exc:
                problems.append(f"{at}.{lang}: bad template: {exc}")
        if len(names) == 2 and names["zh"] != names["en"]:
            # Both languages are filled from the same values: a name in one
            # only would be a silent omission in the other.
            problems.append(
                f"{at}: zh uses {sorted(names['zh'])} but en uses {sorted(names['en'])}"
            )


def _placeholders(template: str) -> set[str]:
    """Placeholder names of a str.format template; ValueError if unusable.

    Only plain names are allowed: values arrive as a dict, so positional
    fields or attribute/index lookups would fail at render time.
    """
    names: set[str] = set()
    for _, field, spec, _ in string.Formatter().parse(template):
        if field is None:
            continue
        if not _PLACEHOLDER.match(field):
            raise ValueError(f"placeholder {{{field}}} must be a plain name")
        names.add(field)
        if spec:
            names |= _placeholders(spec)
    return names


def _fill(check_id: str, reason: str, lang: str, template: str, values: dict[str, Any]) -> str:
    try:
        return template.format_map(values)
    except KeyError as exc:
        raise RulesError(
            f"{check_id}: message {reason!r} ({lang}) needs value {exc.args[0]!r}"
        ) from None
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise RulesError(
            f"{check_id}: message {reason!r} ({lang}) cannot be filled: {exc}"
        ) from None


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False  # e.g. an unquoted YAML date: checks would get a date object


def _labels(result_type: ResultType) -> list[str]:
    return [result_type.code, result_type.zh, result_type.en, *result_type.aliases]


def _label_key(label: str) -> str:
    return "".join(unicodedata.normalize("NFKC", label).casefold().split())


def _as_date(on: date) -> date:
    # datetime is a date subclass but does not compare with date; the
    # inspection date is the (local) calendar day of the datetime given.
    return on.date() if isinstance(on, datetime) else on
