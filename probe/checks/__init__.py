"""Checks: one module per check ID, each a pure function ``check(CheckContext) -> Verdict``.

A module declares ``CHECK_ID`` and ``check``; the words, thresholds and legal
basis sit in rules/. The ruleset loader refuses to run when this list and the
catalogue disagree.
"""

from __future__ import annotations

from collections.abc import Callable

from probe.checks import (audit_system, dual_billing, dual_uplink, foreign_subnet, ip_map, log_retention,
                          realname_client, rogue_dhcp, server_count, terminal_count, video_system)
from probe.checks.context import CheckContext
from probe.findings import Verdict

__all__ = ["CHECKS", "CheckContext"]

_MODULES = (ip_map, terminal_count, server_count, dual_uplink, rogue_dhcp, foreign_subnet, dual_billing, audit_system,
            realname_client, video_system, log_retention)

CHECKS: dict[str, Callable[[CheckContext], Verdict]] = {m.CHECK_ID: m.check for m in _MODULES}
