"""The shipped ruleset (rules/) and its loader (probe.rules)."""

from __future__ import annotations

import hashlib
import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml

from probe.findings import Status, Verdict
from probe.rules import RULES_ENV, RulesError, Ruleset, load_ruleset, ruleset_sha256

AUTOMATIC = [
    "IP-MAP", "TERMINAL-COUNT", "SERVER-COUNT", "DUAL-UPLINK", "ROGUE-DHCP", "FOREIGN-SUBNET",
    "DUAL-BILLING", "AUDIT-SYSTEM", "REALNAME-CLIENT", "VIDEO-SYSTEM", "LOG-RETENTION",
]
MANUAL = ["SIGNAGE", "ADDRESS", "SECURITY-OFFICER", "REALNAME-ONSITE", "ONLINE-COUNT",
          "HARMFUL-INFO"]
WITH_MODULES = {"IP-MAP", "TERMINAL-COUNT", "DUAL-UPLINK", "ROGUE-DHCP", "FOREIGN-SUBNET", "SERVER-COUNT", "DUAL-BILLING",
                "AUDIT-SYSTEM", "REALNAME-CLIENT", "VIDEO-SYSTEM", "LOG-RETENTION"}

# Placeholders the check modules fill; a template drifting from these breaks a check.
PLACEHOLDERS = {
    "IP-MAP": {
        "all_match": ("pass", {"checked", "unidentified"}),
        "mismatches": ("fail", {"count", "checked"}),
        "no_terminals": ("inconclusive", set()),
        "none_identified": ("inconclusive", {"live"}),
        "too_few_identified": ("inconclusive", {"checked", "live", "min_share_pct"}),
    },
    "TERMINAL-COUNT": {
        "within_licence": ("pass", {"seen", "licensed"}),
        "below_licence": ("pass", {"seen", "licensed"}),
        "over_licence": ("fail", {"identified", "seen", "licensed"}),
        "unclear_over": ("inconclusive", {"identified", "seen", "licensed"}),
        "no_terminals": ("inconclusive", set()),
    },
}

# Inspection dates either side of every renumbering the digest records.
BOUNDARIES = [date(2022, 3, 28), date(2022, 3, 29), date(2025, 12, 31), date(2026, 1, 1),
              date(2026, 9, 30), date(2026, 10, 1), date(2027, 6, 1)]


@pytest.fixture(scope="module")
def rules() -> Ruleset:
    return load_ruleset()


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped rules directory, safe to break."""
    copy = tmp_path / "rules"
    shutil.copytree(load_ruleset().root, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _problems(root: Path) -> str:
    with pytest.raises(RulesError) as caught:
        load_ruleset(root)
    assert caught.value.problems, "RulesError must list its problems"
    return "\n".join(caught.value.problems)


# ------------------------------------------------------------------ shipped data


def test_shipped_ruleset_loads(rules):
    assert rules.version == "2026.11.4"
    assert len(rules.sha256) == 64


def test_every_design_check_is_catalogued(rules):
    for check_id in AUTOMATIC:
        assert rules.checks[check_id].kind == "automatic"
        assert rules.checks[check_id].pending is (check_id not in WITH_MODULES)
    for check_id in MANUAL:
        assert rules.checks[check_id].kind == "manual"
        assert rules.checks[check_id].pending is False
    assert set(rules.checks) == set(AUTOMATIC) | set(MANUAL)
    assert all(rules.checks[c].result_type_on_fail == "pending_followup" for c in AUTOMATIC)


def test_thresholds(rules):
    assert rules.checks["IP-MAP"].thresholds == {"sample_size": 2, "min_identified_share": 0.5}
    assert rules.checks["REALNAME-CLIENT"].thresholds == {"max_missing_share": 0.05}
    assert rules.checks["LOG-RETENTION"].thresholds == {"retention_days": 180,
                                                        "gap_allowance_days": 0}


@pytest.mark.parametrize("check_id", sorted(PLACEHOLDERS))
def test_message_placeholders_are_the_contract(rules, check_id):
    messages = rules.checks[check_id].messages
    for reason, (status, names) in PLACEHOLDERS[check_id].items():
        assert messages[reason].status == status, reason
        assert messages[reason].placeholders() == names, reason


def test_pending_and_manual_messages(rules):
    for check_id, rule in rules.checks.items():
        reason = "pending" if rule.pending else "manual" if rule.kind == "manual" else None
        if reason:
            values = {"live_terminals": 7} if check_id == "ONLINE-COUNT" else {}
            finding = rules.render(check_id, Verdict(status=Status.MANUAL, reason=reason,
                                                     values=values), date(2026, 11, 20))
            assert finding.summary_zh and finding.summary_en
            assert finding.result_type is None
    online = rules.render("ONLINE-COUNT", Verdict(status=Status.MANUAL, reason="manual",
                                                  values={"live_terminals": 7}), date(2026, 11, 20))
    assert "7" in online.summary_zh and "7" in online.summary_en


@pytest.mark.parametrize("on", BOUNDARIES)
def test_every_check_cites_something_on_every_date(rules, on):
    for check_id in rules.checks:
        assert rules.citations(check_id, on), (check_id, on)
    assert rules.general_citations(on)


# --------------------------------------------------------------------- citations


def _csl(citations):
    return [c for c in citations if "网络安全法" in c.law]


def test_log_retention_cites_cybersecurity_law_of_the_day(rules):
    before = _csl(rules.citations("LOG-RETENTION", date(2025, 12, 31)))
    after = _csl(rules.citations("LOG-RETENTION", date(2026, 1, 1)))
    assert [c.article for c in before] == ["第二十一条第（三）项", "第五十九条"]
    assert [c.article for c in after] == ["第二十三条", "第六十一条"]
    assert all(c.verified == "V" for c in before + after)
    assert rules.provisions["cybersecurity-law-2016-art21-3"].article_arabic == "21(3)"
    assert rules.provisions["cybersecurity-law-2025-art23"].article_arabic == "23"


def test_order_151_gives_way_to_order_176(rules):
    def mps(on):
        return [c for c in rules.citations("LOG-RETENTION", on) if "公安部令" in c.law]

    (old,) = mps(date(2026, 9, 30))
    (new,) = mps(date(2026, 10, 1))
    assert "第151号" in old.law and old.article == "第十条第（三）项"
    assert "第176号" in new.law and new.article is None  # numbers unknown: cited by name
    assert new.verified == "P"


def test_regulation_renumbering_2022(rules):
    def articles(on):
        return [c.article for c in rules.citations("DUAL-UPLINK", on)
                if "363" in c.law and c.article in ("第三十二条", "第三十三条")]

    assert articles(date(2022, 3, 28)) == ["第三十二条"]
    assert articles(date(2022, 3, 29)) == ["第三十三条"]


# ------------------------------------------------------------------- the hash


def test_sha256_stable_and_content_sensitive(rules, rules_copy):
    assert load_ruleset().sha256 == rules.sha256
    assert load_ruleset(rules_copy).sha256 == rules.sha256  # location does not count

    catalogue = rules_copy / "catalogue.yaml"
    data = catalogue.read_bytes()
    i = data.index(b"Patrol for harmful information")
    catalogue.write_bytes(data[:i] + b"p" + data[i + 1:])  # one byte
    changed = load_ruleset(rules_copy)
    assert changed.sha256 != rules.sha256
    assert changed.checks["HARMFUL-INFO"].title_en.startswith("patrol")


def test_sha256_recipe_is_recomputable(rules):
    lines = b""
    for rel in sorted(p.relative_to(rules.root).as_posix() for p in rules.root.rglob("*.yaml")):
        digest = hashlib.sha256((rules.root / rel).read_bytes()).hexdigest()
        lines += rel.encode() + b"\0" + digest.encode() + b"\n"
    assert hashlib.sha256(lines).hexdigest() == rules.sha256 == ruleset_sha256(rules.root)


def test_environment_variable_overrides_default(rules, rules_copy, monkeypatch):
    (rules_copy / "extra.yaml").write_text("x: 1\n", encoding="utf-8")  # hashed, not parsed
    monkeypatch.setenv(RULES_ENV, str(rules_copy))
    loaded = load_ruleset()
    assert loaded.root == rules_copy
    assert loaded.sha256 == ruleset_sha256(rules_copy) != rules.sha256


# -------------------------------------------------------------- require_modules


def test_require_modules_agrees_with_shipped_catalogue(rules):
    rules.require_modules(set(WITH_MODULES))


def test_require_modules_names_extra_module(rules):
    with pytest.raises(RulesError) as caught:
        rules.require_modules(WITH_MODULES | {"FOO"})
    assert any("FOO" in p for p in caught.value.problems)


def test_require_modules_names_missing_module(rules):
    with pytest.raises(RulesError) as caught:
        rules.require_modules({"TERMINAL-COUNT"})
    assert any("IP-MAP" in p for p in caught.value.problems)


def test_require_modules_refuses_modules_for_pending_or_manual(rules_copy):
    # Every automatic check has its module now: make one pending again in a copy.
    _edit(rules_copy / "catalogue.yaml", lambda d: d["checks"]["LOG-RETENTION"].update(
        pending=True, messages={"pending": d["templates"]["pending"]}))
    with pytest.raises(RulesError) as caught:
        load_ruleset(rules_copy).require_modules(WITH_MODULES | {"SIGNAGE"})
    text = "\n".join(caught.value.problems)
    assert "LOG-RETENTION" in text and "pending" in text
    assert "SIGNAGE" in text and "manual" in text


# ------------------------------------------------------------------ broken copies


def test_unknown_key_is_named(rules_copy):
    _edit(rules_copy / "catalogue.yaml", lambda d: d["checks"]["IP-MAP"].update(colour="red"))
    text = _problems(rules_copy)
    assert "colour" in text and "IP-MAP" in text


def test_unknown_legal_id_is_named(rules_copy):
    _edit(rules_copy / "catalogue.yaml",
          lambda d: d["checks"]["TERMINAL-COUNT"]["legal_basis"].append("no-such-law-art99"))
    text = _problems(rules_copy)
    assert "no-such-law-art99" in text and "TERMINAL-COUNT" in text


def test_bad_template_is_named(rules_copy):
    def break_template(d):
        d["checks"]["IP-MAP"]["messages"]["mismatches"]["zh"] = "{count 台不符"

    _edit(rules_copy / "catalogue.yaml", break_template)
    text = _problems(rules_copy)
    assert "IP-MAP" in text and "mismatches" in text and "zh" in text


def test_template_languages_must_agree(rules_copy):
    def drift(d):
        d["checks"]["IP-MAP"]["messages"]["mismatches"]["en"] = "{count} mismatches"

    _edit(rules_copy / "catalogue.yaml", drift)
    assert "mismatches" in _problems(rules_copy)


def test_unknown_result_type_is_named(rules_copy):
    _edit(rules_copy / "catalogue.yaml",
          lambda d: d["checks"]["IP-MAP"].update(result_type_on_fail="closed"))
    assert "'closed'" in _problems(rules_copy)


def test_pending_on_manual_item_is_refused(rules_copy):
    _edit(rules_copy / "catalogue.yaml", lambda d: d["checks"]["SIGNAGE"].update(pending=True))
    assert "SIGNAGE" in _problems(rules_copy)


def test_threshold_must_be_plain_data(rules_copy):
    _edit(rules_copy / "catalogue.yaml",
          lambda d: d["checks"]["LOG-RETENTION"]["thresholds"].update(since=date(2026, 1, 1)))
    assert "thresholds.since" in _problems(rules_copy)


def test_old_numbering_needs_its_successor(rules_copy):
    _edit(rules_copy / "catalogue.yaml",
          lambda d: d["checks"]["LOG-RETENTION"]["legal_basis"].remove(
              "cybersecurity-law-2025-art23"))
    assert "cybersecurity-law-2025-art23" in _problems(rules_copy)


def test_bad_provision_is_named_without_a_flood(rules_copy):
    _edit(rules_copy / "legal.yaml",
          lambda d: d["provisions"]["regulation-363-art8"].update(verified="X"))
    problems = _problems(rules_copy).splitlines()
    assert any("regulation-363-art8" in p and "verified" in p for p in problems)


def test_duplicate_yaml_key_is_refused(rules_copy):
    path = rules_copy / "ruleset.yaml"
    path.write_text(path.read_text(encoding="utf-8") + 'version: "9.9.9"\n', encoding="utf-8")
    assert "duplicate key 'version'" in _problems(rules_copy)


def test_all_problems_reported_at_once(rules_copy):
    def two(d):
        d["checks"]["IP-MAP"]["colour"] = "red"
        d["checks"]["ADDRESS"]["legal_basis"] = ["nowhere"]

    _edit(rules_copy / "catalogue.yaml", two)
    text = _problems(rules_copy)
    assert "colour" in text and "nowhere" in text


def test_missing_directory(tmp_path):
    assert "not found" in _problems(tmp_path / "absent")


# ------------------------------------------------------------------------ render


def test_render_fail_carries_result_type(rules):
    verdict = Verdict(status=Status.FAIL, reason="mismatches", values={"count": 1, "checked": 2},
                      evidence={"checked": 2, "mismatches": [{"number": 3}]})
    finding = rules.render("IP-MAP", verdict, date(2026, 11, 20))
    assert finding.status is Status.FAIL
    assert finding.result_type == "pending_followup"
    assert finding.title_zh == "终端IP与机器编号一致"
    assert "1" in finding.summary_zh and "2" in finding.summary_zh
    assert finding.summary_en.startswith("1 of 2")
    assert finding.evidence == verdict.evidence
    assert finding.legal_basis == rules.citations("IP-MAP", date(2026, 11, 20))


def test_render_pass_has_no_result_type(rules):
    verdict = Verdict(status=Status.PASS, reason="within_licence",
                      values={"seen": 100, "licensed": 120})
    finding = rules.render("TERMINAL-COUNT", verdict, date(2026, 11, 20))
    assert finding.result_type is None
    assert "100" in finding.summary_zh and "120" in finding.summary_en


def test_render_unknown_reason_names_check_and_reason(rules):
    with pytest.raises(RulesError) as caught:
        rules.render("IP-MAP", Verdict(status=Status.FAIL, reason="nonsense"), date(2026, 1, 1))
    assert "IP-MAP" in str(caught.value) and "nonsense" in str(caught.value)


def test_render_missing_value_names_check_and_reason(rules):
    with pytest.raises(RulesError) as caught:
        rules.render("IP-MAP", Verdict(status=Status.FAIL, reason="mismatches",
                                       values={"count": 1}), date(2026, 1, 1))
    text = str(caught.value)
    assert "IP-MAP" in text and "mismatches" in text and "checked" in text


def test_render_refuses_status_the_catalogue_does_not_give(rules):
    with pytest.raises(RulesError):
        rules.render("TERMINAL-COUNT", Verdict(status=Status.FAIL, reason="below_licence",
                                               values={"seen": 1, "licensed": 2}),
                     date(2026, 1, 1))


# ------------------------------------------------------------------ result types


def test_result_type_lookup(rules):
    assert rules.result_type("发现问题经责令已改正").code == "corrected"
    assert rules.result_type("发现问题已责令改正").code == "corrected"
    assert rules.result_type("corrected").zh == "发现问题已责令改正"
    assert rules.result_type("通过登记的住所(经营场所)无法联系").code == "unreachable"
    assert rules.result_type("该企业已注销或吊销").code == "deregistered"
    assert len(rules.result_types) == 9
    with pytest.raises(RulesError):
        rules.result_type("违反公安部门相关规定")
