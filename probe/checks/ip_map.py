"""IP-MAP 终端IP与机器编号一致 — every terminal sits on the address its machine number gives.

Why: seed 000 (马尾区方案) 四(1)①: 网吧内网IP地址与终端机编号是否相符; officers
check it today on two PCs by eye. A café that moves machines off their
numbered addresses breaks the link between a logged address and the seat
(条例 Art. 8 fixed network address, Art. 13 changes need filing).

How: each live terminal's machine number comes from the staged MAC table,
else from its NetBIOS or DHCP name through the profile's hostname pattern;
its expected address is ``first_address + number - 1``.

Fails when any identified terminal is elsewhere. Inconclusive when no
terminal, or too small a share of them, could be identified (the share is a
threshold in rules/). It also draws terminals at random, with a recorded
seed, for the officers to confirm by eye on site.
"""

from __future__ import annotations

import random
from collections import Counter

from probe.checks.context import CheckContext, LiveHost
from probe.findings import Status, Verdict

CHECK_ID = "IP-MAP"


def draw_sample(hosts: list[LiveHost], size: int, seed: int) -> list[LiveHost]:
    """Terminals for the officers to look at, drawn reproducibly from the recorded seed."""
    ordered = sorted(hosts, key=lambda h: (int(h.address), h.mac))
    return random.Random(seed).sample(ordered, min(size, len(ordered)))


def check(ctx: CheckContext) -> Verdict:
    """Compare every identified terminal's address with its machine number's address."""
    terminals = ctx.terminals
    identified = [h for h in terminals if h.number is not None]
    unidentified = [h for h in terminals if h.number is None]
    mismatches = []
    for h in identified:
        expected = ctx.profile.expected_address(h.number)
        if h.address != expected:
            mismatches.append({"number": h.number, "address": str(h.address),
                               "expected_address": str(expected) if expected else None,
                               "mac": h.mac, "name": h.name, "number_from": h.number_source})
    seed = ctx.observations.run.sample_seed
    sample = draw_sample(identified or terminals, int(ctx.thresholds["sample_size"]), seed)
    claimed = Counter(h.number for h in identified)
    evidence = {
        "mismatches": sorted(mismatches, key=lambda m: (m["number"], m["address"])),
        "checked": len(identified),
        "live_terminals": len(terminals),
        "unidentified": [{**h.brief(), "vendor": h.vendor} for h in unidentified],
        "duplicate_numbers": sorted(n for n, c in claimed.items() if c > 1),
        "sample": [{**h.brief(), "number": h.number} for h in sample],
        "sample_seed": seed,
        "observations": ["arp.hosts", "netbios.answers", "dhcp_hostnames"],
    }
    min_share = float(ctx.thresholds["min_identified_share"])
    if not terminals:
        return Verdict(status=Status.INCONCLUSIVE, reason="no_terminals", evidence=evidence)
    if mismatches:
        return Verdict(status=Status.FAIL, reason="mismatches", evidence=evidence,
                       values={"count": len(mismatches), "checked": len(identified)})
    if not identified:
        return Verdict(status=Status.INCONCLUSIVE, reason="none_identified", evidence=evidence,
                       values={"live": len(terminals)})
    if len(identified) < min_share * len(terminals):
        return Verdict(status=Status.INCONCLUSIVE, reason="too_few_identified", evidence=evidence,
                       values={"checked": len(identified), "live": len(terminals),
                               "min_share_pct": round(min_share * 100)})
    return Verdict(status=Status.PASS, reason="all_match", evidence=evidence,
                   values={"checked": len(identified), "unidentified": len(unidentified)})
