"""Fairness of cafe-draw/1: over many draws, every venue and every inspector is drawn equally often.

Pearson's chi-square goodness of fit against equal counts, with a stated
threshold: a stream passes when p >= P_MIN = 0.001. The draws' inputs
(secrets, witness digits) are fixed, so the counts, and the verdict, are the
same on every run: the test cannot flake. It is also shown to have teeth: the
same test run on a ranking with a modulo bias fails it.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from functools import lru_cache

import pytest

from agent_api import draw_algorithm as algo
from tests.chisquare import chi2_sf, gamma_q, goodness_of_fit

P_MIN = 0.001
DRAWS = 3000
VENUES, BLACKLISTED, INSPECTORS = 40, 8, 8  # 2 regular picks and 1 blacklist pick a draw, 2 inspectors each


@lru_cache(maxsize=1)
def registry() -> tuple[list[str], dict]:
    lines = algo.snapshot_lines([(f"91350105MA{i:08d}", i < BLACKLISTED, f"网吧{i}") for i in range(VENUES)],
                                [(f"0{i:05d}", "网安大队") for i in range(INSPECTORS)], [])
    announcement = algo.announce(
        lines, task_number="FAIR", task_name="公平性", plan_number="P", plan_name="P", jurisdiction="FZ-MW",
        authority="A", check_type="undirected", check_start="2026-01-01", check_end="2026-01-02",
        prepared_at="2026-01-01T00:00:00+08:00", ratio="0.05", blacklist_ratio="0.05", inspectors_per_venue=2,
        commitment="0" * 64, beacon_name=None)
    return lines, announcement


def tally(draws: int = DRAWS) -> tuple[Counter, Counter, Counter]:
    """How often each venue was a regular pick, each blacklisted venue the blacklist pick, each inspector sent."""
    lines, announcement = registry()
    regular, blacklist, inspectors = Counter(), Counter(), Counter()
    for n in range(draws):
        secret = hashlib.sha256(f"secret {n}".encode()).digest()
        digits = f"{n:020d}"
        outcome = algo.compute_draw(lines, announcement, secret, [("甲", digits[:10]), ("乙", digits[10:])], None)
        regular.update(outcome.picks["regular"])
        blacklist.update(outcome.picks["blacklist"])
        inspectors.update(b for pick in outcome.final for b in pick.inspectors)
    return regular, blacklist, inspectors


def p_values(draws: int = DRAWS) -> dict[str, float]:
    regular, blacklist, inspectors = tally(draws)
    assert len(regular) == VENUES and len(blacklist) == BLACKLISTED and len(inspectors) == INSPECTORS
    assert sum(regular.values()) == 2 * draws and sum(blacklist.values()) == draws
    return {name: goodness_of_fit(list(counts.values()))[2]
            for name, counts in (("venue", regular), ("blacklist", blacklist), ("inspector", inspectors))}


def test_every_venue_and_every_inspector_is_drawn_equally_often():
    got = p_values()
    assert all(p >= P_MIN for p in got.values()), got


def test_the_test_catches_a_modulo_biased_ranking(monkeypatch):
    """Ranking by ticket mod 7 (ties broken by key), a classic modulo shortcut, favours low keys: it fails."""
    fair = algo.stream

    def biased(seed: bytes, name: str, keys):
        return sorted(fair(seed, name, keys), key=lambda kt: (int(kt[1], 16) % 7, kt[0]))

    monkeypatch.setattr(algo, "stream", biased)
    got = p_values()
    assert all(p < P_MIN for p in got.values()), got


# --- the chi-square survival function itself ----------------------------------------------------------------------

@pytest.mark.parametrize(("x", "df", "p"), [
    # Upper-tail critical values as printed in the usual tables (three decimals), e.g. NIST/SEMATECH 1.3.6.7.4.
    (3.841, 1, 0.05), (6.635, 1, 0.01), (5.991, 2, 0.05), (11.070, 5, 0.05), (24.322, 7, 0.001),
    (18.307, 10, 0.05), (23.209, 10, 0.01), (29.588, 10, 0.001), (59.703, 30, 0.001), (124.342, 100, 0.05),
])
def test_chi2_sf_matches_table_values(x, df, p):
    assert chi2_sf(x, df) == pytest.approx(p, rel=2e-3)


def test_chi2_sf_matches_closed_forms():
    for x in (0.01, 0.5, 1, 2.5, 7, 30, 90):
        assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-12)  # df 2: exponential
        assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-9, abs=1e-300)
        # df 4: Q(2, x/2) = e^(-x/2) (1 + x/2); both expansions of gamma_q meet there
        assert chi2_sf(x, 4) == pytest.approx(math.exp(-x / 2) * (1 + x / 2), rel=1e-12)
    assert chi2_sf(0, 5) == 1.0 and gamma_q(3, 0) == 1.0
    with pytest.raises(ValueError):
        gamma_q(0, 1)
