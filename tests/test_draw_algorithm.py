"""The draw algorithm cafe-draw/1 (agent_api.draw_algorithm): sizes, snapshot, seed, streams, picks, teams,
replacements, and the verifier against tampered and malformed bundles."""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from stdnum.cn import uscc

from agent_api import draw_algorithm as algo

SECRET = bytes(range(32))
DIGITS = "31415926535897932384"


def code(i: int) -> str:
    """A well-formed credit code (GB 32100-2015 check character included)."""
    base = f"91350105MA{i:07d}"
    return base + uscc.calc_check_digit(base)


def registry(venues: int, blacklisted: int = 0, inspectors: int = 6,
             conflicts: tuple[tuple[int, int], ...] = ()) -> list[str]:
    """Snapshot lines: venues 0..n-1 (the first ``blacklisted`` flagged), badges B000.., (badge, venue) conflicts."""
    return algo.snapshot_lines([(code(i), i < blacklisted, f"网吧{i}") for i in range(venues)],
                               [(f"B{i:03d}", "马尾分局网安大队") for i in range(inspectors)],
                               [(f"B{b:03d}", code(v)) for b, v in conflicts])


def announce(lines: list[str], **overrides: Any) -> dict[str, Any]:
    values = dict(task_number="MW-2026-01", task_name="2026年第1轮网吧抽查", plan_number="FZ-MW-2026",
                  plan_name="马尾区2026年度抽查计划", jurisdiction="FZ-MW", authority="福州市公安局马尾分局",
                  check_type="undirected", check_start="2026-03-02", check_end="2026-03-13",
                  prepared_at="2026-02-27T09:00:00+08:00", ratio="0.05", blacklist_ratio="0.05",
                  inspectors_per_venue=2, commitment=hashlib.sha256(SECRET).hexdigest(), beacon_name=None)
    return algo.announce(lines, **{**values, **overrides})


def witnesses(n: int) -> list[tuple[str, str]]:
    """The n-th deterministic witness input (two witnesses, 20 digits in all)."""
    digits = f"{n:020d}"
    return [("见证人甲", digits[:10]), ("公证员乙", digits[10:])]


def draw(lines: list[str], n: int = 0, requests: tuple = (), **overrides: Any) -> algo.Outcome:
    return algo.compute_draw(lines, announce(lines, **overrides), SECRET, witnesses(n), None, list(requests))


def first(lines: list[str], found: Callable[[algo.Outcome], bool], **overrides: Any) -> tuple[int, algo.Outcome]:
    """The first witness input (0, 1, 2, ...) whose draw has a property; deterministic, so never flaky."""
    for n in range(5000):
        outcome = draw(lines, n, **overrides)
        if found(outcome):
            return n, outcome
    raise AssertionError("no witness input up to 5000 gives the wanted case")


def keys(outcome: algo.Outcome, name: str) -> list[str]:
    return [key for key, _ticket in outcome.tickets[name]]


# --- sizes --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "size"), [(0, 0), (1, 1), (19, 1), (20, 1), (21, 2), (400, 20), (60, 3), (61, 4)])
def test_sample_size_is_an_exact_ceiling_at_least_one(n, size):
    assert algo.sample_size("0.05", n) == size


def test_sample_size_other_ratios_and_bounds():
    assert algo.sample_size("1", 7) == 7
    assert algo.sample_size("0.1", 30) == 3  # 0.1 × 30 is 3.0000000000000004 in floating point
    assert algo.sample_size("0.5", 3) == 2
    for bad in ("5%", " 0.05", "0.05 ", "1e-2", "0", "0.0", "1.01", "", ".05", "1/20", None):
        with pytest.raises(ValueError):
            algo.parse_ratio(bad)
    with pytest.raises(ValueError):
        algo.parse_ratio(0.05)  # a float is never a ratio here


# --- snapshot -----------------------------------------------------------------------------------------------------

def test_snapshot_lines_are_canonical():
    lines = algo.snapshot_lines([("B2", True, "乙网吧"), ("A1", False, "甲网吧")],
                                [("0002", "网安大队"), ("0001", "派出所")], [("0002", "A1")])
    assert lines == ["C\t0002\tA1", "I\t0001\t派出所", "I\t0002\t网安大队", "V\tA1\t0\t甲网吧", "V\tB2\t1\t乙网吧"]
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    assert algo.snapshot_bytes(lines) == data
    assert algo.snapshot_sha256(lines) == hashlib.sha256(data).hexdigest()
    assert algo.lp("网吧") == (6).to_bytes(8, "big") + "网吧".encode("utf-8")
    parsed = algo.parse_snapshot(lines)
    assert parsed.venues == {"A1": (False, "甲网吧"), "B2": (True, "乙网吧")}
    assert parsed.inspectors == {"0001": "派出所", "0002": "网安大队"}
    assert parsed.conflicts == {("0002", "A1")} and parsed.blacklist == ["B2"]
    assert parsed.counts() == {"venues": 2, "blacklist": 1, "inspectors": 2, "conflicts": 1}


@pytest.mark.parametrize(("venues", "inspectors", "conflicts", "words"), [
    ([("A1", False, "甲\t网吧")], [], [], "control character"),
    ([("A1", False, "甲网吧\n")], [], [], "control character"),
    ([("A1", False, "甲\x1b[31m")], [], [], "control character"),
    ([("A1", False, "甲\u2028")], [], [], "control character"),
    ([("A1", False, "")], [], [], "empty"),
    ([("A1", False, "甲"), ("A1", True, "乙")], [], [], "duplicate credit code"),
    ([], [("0001", "甲"), ("0001", "乙")], [], "duplicate badge"),
    ([("A1", False, "甲")], [("0001", "甲")], [("0002", "A1")], "absent"),
    ([("A1", False, "甲")], [("0001", "甲")], [("0001", "A1"), ("0001", "A1")], "duplicate conflict"),
])
def test_snapshot_refuses_control_characters_duplicates_and_dangling_conflicts(venues, inspectors, conflicts, words):
    with pytest.raises(algo.SnapshotError) as caught:
        algo.snapshot_lines(venues, inspectors, conflicts)
    assert any(words in p for p in caught.value.problems)


@pytest.mark.parametrize(("lines", "words"), [
    (["V\tB\t0\t乙", "V\tA\t0\t甲"], "line 2: out of order"),
    (["V\tA\t0\t甲", "V\tA\t0\t甲"], "line 2: out of order"),
    (["V\tA\t0\t甲", "V\tA\t1\t甲"], "duplicate credit code"),
    (["V\tA\t2\t甲"], "flag"),
    (["V\tA\t0"], "shape"),
    (["I\t0001\t甲\t乙"], "shape"),
    (["X\t1\t2"], "shape"),
    (["V\tA\t0\t"], "empty field"),
    (["V\tA\t0\t甲\r"], "control character"),
    (["V\tA\t0\t甲\nV\tB\t0\t乙"], "control character"),
    (["C\t0001\tA", "V\tA\t0\t甲"], "line 1: conflict names an absent entry"),
    ("V\tA\t0\t甲", "list of text lines"),
    ([1, 2], "list of text lines"),
])
def test_parse_snapshot_names_each_bad_line(lines, words):
    with pytest.raises(algo.SnapshotError) as caught:
        algo.parse_snapshot(lines)
    assert any(words in p for p in caught.value.problems), caught.value.problems


# --- seed and tickets ---------------------------------------------------------------------------------------------

def _lp(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(8, "big") + data


def test_seed_and_tickets_follow_the_written_recipe():
    """Rebuilt here from the module docstring alone, as an implementer in another language would."""
    lines = registry(45, blacklisted=9, conflicts=((0, 3),))
    ann = announce(lines, beacon_name="NIST Beacon 2.0 pulse 1234567")
    inputs = [("张三", "1234567890"), ("李四", "0987654321")]
    beacon = "ab" * 64
    message = b"".join(_lp(x) for x in [
        "cafe-draw/1", hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest(), "MW-2026-01",
        "3", "1", "2", "0.05", "0.05", "NIST Beacon 2.0 pulse 1234567", "2",
        "张三", "1234567890", "李四", "0987654321", beacon])
    seed = hmac.new(SECRET, message, hashlib.sha256).digest()
    assert algo.derive_seed(SECRET, ann, lines, inputs, beacon) == seed
    outcome = algo.compute_draw(lines, ann, SECRET, inputs, beacon)
    assert outcome.seed == seed.hex() and outcome.sizes == {"regular": 3, "blacklist": 1}
    for name, candidates in (("venue", [code(i) for i in range(45)]), ("blacklist", [code(i) for i in range(9)]),
                             ("inspector", [f"B{i:03d}" for i in range(6)])):
        tickets = {key: hashlib.sha256(seed + _lp(name) + _lp(key)).hexdigest() for key in candidates}
        assert outcome.tickets[name] == [[k, t] for k, t in sorted(tickets.items(), key=lambda kt: (kt[1], kt[0]))]
        assert all(int(a[1], 16) < int(b[1], 16) for a, b in zip(outcome.tickets[name], outcome.tickets[name][1:]))
    assert outcome.picks["regular"] == keys(outcome, "venue")[:3]
    # Any change of any input changes the seed: the digits, their split between witnesses, the beacon value.
    others = [(inputs[:1] + [("李四", "098765432")], beacon), ([("张三", "12345678900"), ("李四", "987654321")], beacon),
              (inputs, beacon + "0"), (inputs[::-1], beacon)]
    assert len({algo.derive_seed(SECRET, ann, lines, w, b) for w, b in others} | {seed}) == 5


def test_the_test_vector_of_the_specification():
    lines = algo.snapshot_lines([("91350105MA0000001X", False, "甲网吧"), ("91350105MA0000002Y", True, "乙网吧"),
                                 ("91350105MA0000003Z", False, "丙网吧")],
                                [("350001", "网安大队"), ("350002", "网安大队"), ("350003", "派出所"), ("350004", "派出所")],
                                [("350001", "91350105MA0000002Y")])
    ann = announce(lines, task_number="T-1")
    outcome = algo.compute_draw(lines, ann, SECRET, [("张三", "1234567890"), ("李四", "0987654321")], None)
    told = " ".join(algo.__doc__.split())
    shown = [line.replace("\t", "|") for line in lines]
    for value in [*shown, outcome.snapshot_sha256, ann["commitment"], outcome.seed]:
        assert value in told  # the docstring's vector is this very draw
    assert outcome.snapshot_sha256 == "9159b01e8a20b96838a96f63e0b68f196ac9a10be7b8776e67b5fde9fee3a98f"
    assert outcome.seed == "9912c26c7fe231b4a586ba66c45e2f3e358a8de31d033a01f47e52821e89a66a"
    assert [t[:8] for _k, t in outcome.tickets["venue"] + outcome.tickets["inspector"]] == [
        "23a90bd8", "79b7fab1", "f3bd9e94", "0efe662c", "8cb756ae", "be7e9854", "e9988a94"]
    assert [p.public() for p in outcome.final] == [
        {"credit_code": "91350105MA0000001X", "kind": "regular", "position": 1, "inspectors": ["350004", "350002"]},
        {"credit_code": "91350105MA0000002Y", "kind": "blacklist", "position": 1, "inspectors": ["350003", "350004"]}]


# --- picks, teams, replacements -----------------------------------------------------------------------------------

def test_regular_first_then_blacklist_and_a_duplicate_is_neither_redrawn_nor_replaced():
    lines = registry(40, blacklisted=10)
    n, outcome = first(lines, lambda o: o.picks["blacklist"][0] in o.picks["regular"])
    picks = outcome.picks
    dup = picks["blacklist"][0]
    assert outcome.sizes == {"regular": 2, "blacklist": 1}
    assert picks["blacklist_duplicates"] == [dup]
    assert [p.credit_code for p in outcome.final] == picks["regular"]  # nothing added for the blacklist
    assert [p.kind for p in outcome.final] == ["regular", "regular"]
    assert len(keys(outcome, "blacklist")) == 10  # candidates were left: not replaced, by the rule
    # And when the blacklist pick is new, it is drawn after the regular ones, as "blacklist".
    _n, fresh = first(lines, lambda o: o.picks["blacklist"][0] not in o.picks["regular"])
    assert [p.kind for p in fresh.final] == ["regular", "regular", "blacklist"]
    assert fresh.final[2].credit_code == fresh.picks["blacklist"][0] and fresh.final[2].position == 1


def test_teams_have_distinct_inspectors_dealt_from_one_cursor():
    lines = registry(100, inspectors=7)
    for n in range(30):
        outcome = draw(lines, n, ratio="0.1")  # 10 venues, 2 each: the cursor wraps round the 7 inspectors
        order = keys(outcome, "inspector")
        dealt = [b for p in outcome.final for b in p.inspectors]
        assert dealt == [order[i % 7] for i in range(20)]
        assert all(len(set(p.inspectors)) == 2 for p in outcome.final)


def test_conflicts_are_skipped_even_at_the_lowest_tickets():
    # Venue 0 conflicts with inspectors 0, 1 and 2; find a draw where venue 0 is drawn first and its
    # two lowest-ticket inspectors are among those it conflicts with.
    lines = registry(20, inspectors=5, conflicts=((0, 0), (1, 0), (2, 0)))
    blocked = {"B000", "B001", "B002"}
    n, outcome = first(lines, lambda o: o.picks["regular"] == [code(0)]
                       and set(keys(o, "inspector")[:2]) <= blocked)
    order = keys(outcome, "inspector")
    assert outcome.final[0].inspectors == [b for b in order if b not in blocked]
    for m in range(200):  # and never, over many draws, is anyone sent to a venue they declared a conflict with
        for pick in draw(lines, m).final:
            assert not (pick.credit_code == code(0) and blocked & set(pick.inspectors))


def test_a_venue_without_enough_free_inspectors_cannot_be_drawn():
    lines = registry(1, inspectors=4, conflicts=((0, 0), (1, 0), (2, 0)))
    with pytest.raises(algo.DrawError, match="cannot find 2 inspectors"):
        draw(lines)


def test_a_venue_replacement_is_the_next_ticket_of_the_same_stream():
    lines = registry(60, blacklisted=20)  # sizes: 3 regular, 1 blacklist
    n, outcome = first(lines, lambda o: not o.picks["blacklist_duplicates"]
                       and keys(o, "blacklist")[1] in o.picks["regular"])
    venue_stream, black_stream = keys(outcome, "venue"), keys(outcome, "blacklist")
    regular, black = outcome.picks["regular"], outcome.picks["blacklist"][0]
    requests = [{"kind": "venue", "venue": regular[1]}, {"kind": "venue", "venue": black}]
    replaced = draw(lines, n, tuple(requests))
    # The venue stream's next ticket is position 4 unless it was drawn as the blacklist pick.
    expected_regular = next(c for c in venue_stream[3:] if c not in {*regular, black})
    # The blacklist stream's second ticket was drawn as regular: skipped for the next one not yet drawn.
    expected_black = next(c for c in black_stream[2:] if c not in {*regular, black, expected_regular})
    assert replaced.replacements == [expected_regular, expected_black]
    final = {p.credit_code: p for p in replaced.final}
    assert list(final) == [regular[0], regular[2], expected_regular, expected_black]
    assert final[expected_black].kind == "blacklist"
    assert final[expected_black].position == black_stream.index(expected_black) + 1 >= 3
    assert final[expected_regular].position == venue_stream.index(expected_regular) + 1
    assert all(len(p.inspectors) == 2 for p in replaced.final)
    with pytest.raises(algo.DrawError, match="not an active pick"):
        draw(lines, n, (*requests, {"kind": "venue", "venue": regular[1]}))  # already withdrawn


def test_a_stream_that_runs_out_gives_no_replacement():
    lines = registry(3, blacklisted=1)  # one regular pick; the blacklist stream holds one venue only
    n, outcome = first(lines, lambda o: not o.picks["blacklist_duplicates"], blacklist_ratio="1")
    assert [p.kind for p in outcome.final] == ["regular", "blacklist"]
    replaced = draw(lines, n, ({"kind": "venue", "venue": code(0)},), blacklist_ratio="1")
    assert replaced.replacements == [None]
    assert [p.credit_code for p in replaced.final] == outcome.picks["regular"]


def test_an_inspector_replacement_takes_the_next_free_inspector_from_the_cursor():
    lines = registry(20, inspectors=6, conflicts=((0, 0),))
    n, outcome = first(lines, lambda o: o.picks["regular"] == [code(0)] and keys(o, "inspector")[2] == "B000")
    order = keys(outcome, "inspector")
    team = outcome.final[0].inspectors
    assert team == order[:2]
    once = draw(lines, n, ({"kind": "inspector", "venue": code(0), "inspector": team[0]},))
    # Position 2 (B000) conflicts with venue 0, so position 3 is taken, in the replaced member's place.
    assert once.replacements == [order[3]] and once.final[0].inspectors == [order[3], team[1]]
    chain = [{"kind": "inspector", "venue": code(0), "inspector": b} for b in (team[0], order[3], order[4])]
    assert draw(lines, n, tuple(chain)).replacements == [order[3], order[4], order[5]]
    # Past the end the cursor wraps round, but everyone left is on the team, withdrawn from it or in conflict.
    with pytest.raises(algo.DrawError, match="no inspector left"):
        draw(lines, n, (*chain, {"kind": "inspector", "venue": code(0), "inspector": order[5]}))
    with pytest.raises(algo.DrawError, match="not on the team"):
        draw(lines, n, ({"kind": "inspector", "venue": code(0), "inspector": order[5]},))


@pytest.mark.parametrize(("inputs", "beacon_name", "beacon_value", "words"), [
    ([("甲", "1234567890123456789")], None, None, "19 dice digits"),
    ([("甲", "1234567890"), ("乙", "123456789")], None, None, "19 dice digits"),
    ([("甲", "１２３４５６７８９０１２３４５６７８９０")], None, None, "ASCII 0-9"),
    ([("甲", "1234567890 1234567890")], None, None, "ASCII 0-9"),
    ([("甲", "12345678901234567890"), ("乙", "")], None, None, "at least one"),
    ([(" ", "12345678901234567890")], None, None, "needs a name"),
    ([("甲\n", "12345678901234567890")], None, None, "needs a name"),
    ([], None, None, "at least one witness"),
    ([("甲", "12345678901234567890")], "beacon", None, "beacon"),
    ([("甲", "12345678901234567890")], None, "ff", "no beacon was named"),
])
def test_witness_and_beacon_rules(inputs, beacon_name, beacon_value, words):
    problems = algo.witness_problems(inputs, beacon_name, beacon_value)
    assert any(words in p for p in problems), problems
    assert algo.witness_problems([("甲", "1234567890"), ("乙", "1234567890")], None, None) == []


# --- bundle and verifier ------------------------------------------------------------------------------------------

def make_bundle() -> dict[str, Any]:
    lines = registry(60, blacklisted=12, inspectors=6, conflicts=((0, 5), (3, 7)))
    ann = announce(lines)
    outcome = algo.compute_draw(lines, ann, SECRET, witnesses(7), None)
    first_pick = outcome.final[0]
    entries = [{"kind": "venue", "venue": outcome.final[1].credit_code, "approved_by": {"badge": "350100"},
                "reason": "场所已停业 / closed", "at": "2026-03-01T10:00:00+08:00"},
               {"kind": "inspector", "venue": first_pick.credit_code, "inspector": first_pick.inspectors[0],
                "approved_by": {"badge": "350100"}, "reason": "病假 / sick leave", "at": "2026-03-01T10:05:00+08:00"}]
    return algo.make_bundle(ann, lines, SECRET, witnesses(7), None, "2026-02-28T10:00:00+08:00", entries,
                            "2026-03-01T11:00:00+08:00")


def _set(path: tuple, value: Any) -> Callable[[dict], None]:
    def change(bundle: dict) -> None:
        node = bundle
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value(node[path[-1]]) if callable(value) else value
    return change


def _digit(text: str) -> str:
    return text[:-1] + str((int(text[-1]) + 1) % 10)


TAMPERINGS = {
    "witness digit": (_set(("inputs", "witnesses", 0, "digits"), _digit), "differs from the recomputed"),
    "snapshot line": (_set(("snapshot", -1), lambda line: line.replace("网吧", "网咖")), "snapshot_sha256"),
    "secret": (_set(("secret",), lambda s: s[:-1] + ("0" if s[-1] != "0" else "1")), "commitment"),
    "algorithm": (_set(("announcement", "algorithm"), "cafe-draw/2"), "unknown algorithm version"),
    "format": (_set(("format",), "cafe-draw-bundle/0"), "not a known bundle format"),
    "seed": (_set(("seed",), lambda s: "0" + s[1:] if s[0] != "0" else "1" + s[1:]), "seed"),
    "ticket order": (_set(("tickets", "venue"), lambda t: [t[1], t[0], *t[2:]]), "venue stream position 1"),
    "a pick": (_set(("picks", "regular", 0), "91350105MA00000991"), "picks"),
    "a team": (_set(("picks", "teams"), lambda t: {k: v[::-1] for k, v in t.items()}), "picks"),
    "a replacement": (_set(("replacements", 0, "replacement"), "91350105MA00000991"), "replacement 1"),
    "no approval": (_set(("replacements", 1, "approved_by"), None), "lacks approved_by"),
    "final": (_set(("final",), lambda f: f[:-1]), "final"),
    "sizes": (_set(("announcement", "sizes", "regular"), 4), "sizes"),
    "counts": (_set(("announcement", "counts", "blacklist"), 11), "counts"),
    "ratio": (_set(("announcement", "ratio"), "0.06"), "differs from the recomputed"),
    "too few digits": (_set(("inputs", "witnesses"), lambda w: w[:1]), "at least 20"),
}


def test_a_bundle_verifies_and_every_tampering_is_caught():
    bundle = make_bundle()
    check = algo.verify_bundle(bundle)
    assert check.ok and check.problems == [] and check.final == bundle["final"]
    assert [e["replacement"] is not None for e in bundle["replacements"]] == [True, True]
    assert algo.verify_bundle(json.loads(algo.bundle_json(bundle))).ok
    for name, (change, words) in TAMPERINGS.items():
        changed = copy.deepcopy(bundle)
        change(changed)
        check = algo.verify_bundle(changed)
        assert not check.ok and any(words in p for p in check.problems), (name, check.problems)


def _paths(node: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node[:3]):
            yield from _paths(value, (*path, i))


# Told, not derived: any text verifies there (non-text does not); reason, at and the approver's badge not empty.
TOLD = {*algo.TOLD_FIELDS, "drawn_at", "published_at", "reason", "at", "badge"}


def _still_valid(path: tuple, value: Any) -> bool:
    if path[-1] not in TOLD or not isinstance(value, str):
        return False
    return bool(value.strip()) or path[-1] not in ("reason", "at", "badge")


def test_the_verifier_answers_any_json_shape_without_crashing():
    bundle = make_bundle()
    garbage = [None, 0, 1, -1, 1.5, True, "", "x", "\ud800", [], [None], {}, {"a": 1}, [[1, 2, 3]]]
    for path in list(_paths(bundle))[1:]:
        for value in garbage:
            changed = copy.deepcopy(bundle)
            _set(path, value)(changed)
            if json.dumps(changed, sort_keys=True) == json.dumps(bundle, sort_keys=True):
                continue
            check = algo.verify_bundle(changed)
            if not _still_valid(path, value):
                assert not check.ok, (path, value)
            # Handled by its shape checks, not by the last-resort guard:
            assert not any("malformed bundle" in p for p in check.problems), (path, value, check.problems)
    for value in garbage:
        assert not algo.verify_bundle(value).ok


def test_verify_file_prints_the_picks_and_exits_0_1_or_2(tmp_path):
    bundle = make_bundle()
    good, bad, junk = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "junk.json"
    good.write_bytes(algo.bundle_json(bundle))
    TAMPERINGS["witness digit"][0](bundle)
    bad.write_bytes(algo.bundle_json(bundle))
    junk.write_bytes(b"{not json")
    out = io.StringIO()
    assert algo.verify_file(str(good), out) == 0
    text = out.getvalue()
    assert "verdict: 通过" in text and "MW-2026-01" in text
    assert all(p["credit_code"] in text for p in json.loads(good.read_text())["final"])
    out = io.StringIO()
    assert algo.verify_file(str(bad), out) == 1
    assert "FAILED" in out.getvalue() and out.getvalue().count("问题 / problem:") >= 3
    assert algo.verify_file(str(junk), io.StringIO()) == 2
    assert algo.verify_file(str(tmp_path / "missing.json"), io.StringIO()) == 2


def test_printed_text_from_a_hostile_bundle_cannot_drive_the_terminal(tmp_path):
    bundle = make_bundle()
    bundle["announcement"]["task_name"] = "任务\x1b]0;pwned\x07\x9b2J"
    path = tmp_path / "b.json"
    path.write_bytes(algo.bundle_json(bundle))
    out = io.StringIO()
    assert algo.verify_file(str(path), out) == 0  # the task name is told, not part of the draw
    assert "\x1b" not in out.getvalue() and "\x9b" not in out.getvalue() and "\x07" not in out.getvalue()
