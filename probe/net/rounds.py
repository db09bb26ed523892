"""When to stop asking again: the rule the ARP sweep and the NetBIOS survey share.

Both ask every target once, then again only the silent ones. A host that can
answer is missed by one pass with some probability q (its request or its
answer lost on the switch, the host busy), independently pass after pass, so
after k passes it is still unheard with probability q**k. Of N hosts that can
answer, found ≈ N·(1 − q**k) have been heard and about found·q**k / (1 − q**k)
are still missing.

q is measured on this run, from the hosts that did answer: one first heard in
pass r was missed r − 1 times before it was heard once. Misses over passes
is the maximum-likelihood estimate of q; the rule takes the upper end of its
Wilson score interval (one-sided, ``Z``) so that a run whose first passes
were lucky does not stop early, and never less than ``loss_floor`` (loss that
this run has not happened to show yet).

Asking stops once the expected number of missing hosts falls below
``accepted_misses``. Since P(at least one missing) ≤ E[missing] (Markov), a
threshold of 0.001 leaves a host that can answer unheard in fewer than one
run in a thousand, however large the café; the caller's ``retries`` bounds
the passes whatever the estimate says.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["Z", "miss_rate", "expected_misses", "reply_window"]

Z = 2.326  # one-sided 99 %: the estimate of q is low by more than this only once in a hundred runs


def miss_rate(first_heard: Sequence[int], loss_floor: float, z: float = Z) -> float:
    """Upper bound on the per-pass miss probability from ``first_heard[i]`` hosts first heard in pass i+1."""
    found = sum(first_heard)
    if found == 0:
        return max(loss_floor, 0.0)
    misses = sum(i * n for i, n in enumerate(first_heard))
    passes = misses + found
    p = misses / passes
    z2 = z * z
    upper = (p + z2 / (2 * passes) + z * math.sqrt(p * (1 - p) / passes + z2 / (4 * passes * passes))) / (1 + z2 / passes)
    return min(0.9, max(loss_floor, upper))


def expected_misses(first_heard: Sequence[int], loss_floor: float, z: float = Z) -> float:
    """Hosts that can answer but are likely still unheard after ``len(first_heard)`` passes (see above)."""
    found = sum(first_heard)
    if found == 0:
        return 0.0
    unheard = miss_rate(first_heard, loss_floor, z) ** len(first_heard)
    return found * unheard / (1 - unheard)


def reply_window(rtts: Sequence[float], floor: float, ceiling: float) -> float:
    """How long to listen after a pass: a few times the slow end of the answers seen so far."""
    if not rtts:
        return ceiling if floor >= ceiling else max(floor, min(ceiling, 0.25))
    ordered = sorted(rtts)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return min(ceiling, max(floor, 4 * p95))
