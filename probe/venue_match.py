"""Which staged venue is this café? A pure judgement of what its port said (no I/O).

The signals come from :func:`probe.net.identify.gather_signals`: who answered
the ARP probes for the staged venues' registered gateways (address, MAC), the
DHCP offers (server, offered address, router) and the ARP senders heard.
Each candidate venue is judged on its own registered network section:

Evidence (``Clue.kind``, weight):

* ``gateway_mac`` (10): a registered gateway was heard from its registered MAC.
  MACs are unique, so this tells apart venues that share one LAN plan;
* ``gateway_address`` (3): a registered gateway was heard, no MAC registered for it;
* ``dhcp_server`` (4): an offer from a registered DHCP server, of an address in its subnets;
* ``dhcp_plan`` (2): an offer of an address in its subnets whose router is a registered
  gateway (or, for a venue that registers none, lies in its subnets);
* ``heard`` (1): ARP senders inside its subnets (weak: many cafés share 192.168.0.0/24).

Contradictions (any one rules the venue out):

* ``gateway_mac_differs``: a registered gateway was heard, never from its registered MAC;
* ``offers_outside``: the venue registers a DHCP server, offers came, none inside its subnets;
* ``gateway_silent``: every registered gateway was asked and stayed silent while other asked
  addresses answered (silence alone proves little: some stacks ignore RFC 5227 probes).

A venue *fits* when it has no contradiction and at least one clue other than
``heard``. Its tier is 3 with ``gateway_mac``, else 2 when it fits, 1 with
``heard`` only, else 0. The outcome is ``match`` when the best fitting venue
has no rival: no other fitting venue of the same tier within :data:`MARGIN`
points. Rivals make it ``ambiguous`` (naming them all); no fitting venue
makes it ``none``. A venue with no clue never rivals one that has, so an
unrelated staged venue never changes the outcome, and the candidates' order
never matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from pydantic import BaseModel, Field

from probe.observations import DhcpOffer, VenueSignals
from probe.profile import Network

__all__ = ["Clue", "CandidateScore", "Identification", "match_venues", "MARGIN"]

WEIGHTS = {"gateway_mac": 10, "gateway_address": 3, "dhcp_server": 4, "dhcp_plan": 2, "heard": 1}
DECISIVE = frozenset({"gateway_mac", "gateway_address", "dhcp_server", "dhcp_plan"})
# Within one tier, the best venue must lead by more than a gateway address alone is worth: a venue that
# registered a second gateway which answered does not outrank one that registered only the first.
MARGIN = 4
SHOWN = 4  # addresses, offers or venues named in a reason before "…"


class Clue(BaseModel):
    """One piece of evidence for, or one contradiction against, a candidate venue."""

    kind: Literal["gateway_mac", "gateway_address", "dhcp_server", "dhcp_plan", "heard",
                  "gateway_mac_differs", "offers_outside", "gateway_silent"]
    weight: int = 0
    zh: str
    en: str


class CandidateScore(BaseModel):
    """How one staged venue fits the signals."""

    venue_id: str
    tier: int = Field(description="3 registered gateway MAC heard; 2 fits otherwise; 1 only ARP senders inside; 0")
    score: int
    evidence: list[Clue] = Field(default_factory=list)
    contradictions: list[Clue] = Field(default_factory=list)

    @property
    def fits(self) -> bool:
        """No contradiction and at least one decisive clue."""
        return not self.contradictions and any(c.kind in DECISIVE for c in self.evidence)


class Identification(BaseModel):
    """The verdict: one venue, none, or several that fit equally; ``reason`` is one line, 中文 / English."""

    outcome: Literal["match", "none", "ambiguous"]
    chosen: str | None = None
    fits: list[str] = Field(default_factory=list, description="the chosen venue, or the venues that fit equally")
    reason: str
    scores: list[CandidateScore] = Field(default_factory=list)


# ---------------------------------------------------------------------------
# What was heard


def _server(offer: DhcpOffer) -> IPv4Address:
    """The offering server: option 54, else the frame's source (servers that leave 54 out)."""
    return offer.server_id if offer.server_id is not None else offer.source_ip


def _seen_gateways(signals: VenueSignals) -> dict[IPv4Address, set[str]]:
    """Address → MACs it was heard from: answers to the probes, and any ARP it sent by itself.

    A gateway whose answers were all lost is still known by its own ARP
    requests, which a router sends all day for the terminals it serves.
    """
    seen: dict[IPv4Address, set[str]] = {}
    for answer in signals.gateway_answers:
        seen.setdefault(answer.address, set()).add(answer.mac.lower())
    for sender in signals.heard:
        seen.setdefault(sender.address, set()).add(sender.mac.lower())
    return seen


def _inside(address: IPv4Address, subnets: Sequence[IPv4Network]) -> bool:
    return any(address in net for net in subnets)


def _few(items: Sequence[str]) -> str:
    return ", ".join(items[:SHOWN]) + (", …" if len(items) > SHOWN else "")


def _heard_summary(signals: VenueSignals) -> tuple[str, str]:
    """What the port said, in one phrase each language, for the reason line."""
    zh: list[str] = []
    en: list[str] = []
    answers = [f"{a.address} ({a.mac})" for a in signals.gateway_answers]
    if answers:
        zh.append(f"听到网关 {_few(answers)}")
        en.append(f"heard gateway {_few(answers)}")
    elif signals.asked:
        asked = [str(a) for a in signals.asked]
        zh.append(f"询问的网关 {_few(asked)} 均无应答")
        en.append(f"no answer from the gateways asked ({_few(asked)})")
    offers = [f"{_server(o)}→{o.offered_address}" for o in signals.offers]
    if offers:
        zh.append(f"DHCP 服务器 {_few(offers)}")
        en.append(f"DHCP server {_few(offers)}")
    else:
        zh.append("无 DHCP 提供")
        en.append("no DHCP offer")
    zh.append(f"ARP 发送方 {len(signals.heard) + signals.heard_dropped} 个")
    en.append(f"{len(signals.heard) + signals.heard_dropped} ARP senders")
    return "，".join(zh), ", ".join(en)


# ---------------------------------------------------------------------------
# One candidate


def _gateway_clues(network: Network, seen: dict[IPv4Address, set[str]], evidence: list[Clue],
                   contradictions: list[Clue]) -> None:
    for gateway in dict.fromkeys(network.gateways):
        macs = seen.get(gateway)
        if not macs:
            continue
        registered = network.gateway_macs.get(gateway)
        shown = ", ".join(sorted(macs))
        if registered is None:
            evidence.append(Clue(kind="gateway_address", weight=WEIGHTS["gateway_address"],
                                 zh=f"网关 {gateway} 应答（{shown}，未登记 MAC）",
                                 en=f"gateway {gateway} answered ({shown}; no MAC registered)"))
        elif registered.lower() in macs:
            evidence.append(Clue(kind="gateway_mac", weight=WEIGHTS["gateway_mac"],
                                 zh=f"网关 {gateway} 的 MAC {registered} 与登记一致",
                                 en=f"gateway {gateway} answered from its registered MAC {registered}"))
        else:
            contradictions.append(Clue(kind="gateway_mac_differs",
                                       zh=f"网关 {gateway} 的 MAC 为 {shown}，登记为 {registered}",
                                       en=f"gateway {gateway} answered from {shown}, registered {registered}"))


def _silence(network: Network, signals: VenueSignals, seen: dict[IPv4Address, set[str]]) -> Clue | None:
    """``gateway_silent`` when every registered gateway was asked, none was heard, and others answered."""
    gateways = list(dict.fromkeys(network.gateways))
    asked = set(signals.asked)
    if not gateways or any(g not in asked or seen.get(g) for g in gateways):
        return None
    others = sorted({a.address for a in signals.gateway_answers} - set(gateways))
    if not others:
        return None
    mine, theirs = _few([str(g) for g in gateways]), _few([str(a) for a in others])
    return Clue(kind="gateway_silent", zh=f"登记网关 {mine} 无应答，而 {theirs} 有应答",
                en=f"registered gateway {mine} silent while {theirs} answered")


def _dhcp_clues(network: Network, offers: list[DhcpOffer], evidence: list[Clue],
                contradictions: list[Clue]) -> None:
    if not offers:
        return
    subnets = network.subnets
    servers = set(network.dhcp_servers)
    gateways = set(network.gateways)
    inside = [o for o in offers if _inside(o.offered_address, subnets)]
    own = [o for o in inside if _server(o) in servers]

    def plan_router(offer: DhcpOffer) -> bool:
        if gateways:
            return any(r in gateways for r in offer.routers)
        return not offer.routers or any(_inside(r, subnets) for r in offer.routers)

    plan = [o for o in inside if plan_router(o)]
    if own:
        o = own[0]
        evidence.append(Clue(kind="dhcp_server", weight=WEIGHTS["dhcp_server"],
                             zh=f"登记的 DHCP 服务器 {_server(o)} 提供了 {o.offered_address}",
                             en=f"registered DHCP server {_server(o)} offered {o.offered_address}"))
    elif plan:
        o = plan[0]
        router = o.routers[0] if o.routers else "—"
        evidence.append(Clue(kind="dhcp_plan", weight=WEIGHTS["dhcp_plan"],
                             zh=f"DHCP 服务器 {_server(o)} 提供的 {o.offered_address}（网关 {router}）符合登记",
                             en=f"DHCP server {_server(o)} offered {o.offered_address} (router {router}) "
                                "as registered"))
    if servers and not inside:
        # A venue with static addresses registers no DHCP server; a rogue's offer there says nothing against it.
        outside = [f"{_server(o)}→{o.offered_address}" for o in offers]
        contradictions.append(Clue(kind="offers_outside",
                                   zh=f"DHCP 只提供登记网段外的地址（{_few(outside)}）",
                                   en=f"DHCP offers only outside the registered subnets ({_few(outside)})"))


def _score(venue_id: str, network: Network, signals: VenueSignals, seen: dict[IPv4Address, set[str]]) -> CandidateScore:
    evidence: list[Clue] = []
    contradictions: list[Clue] = []
    _gateway_clues(network, seen, evidence, contradictions)
    if (silent := _silence(network, signals, seen)) is not None:
        contradictions.append(silent)
    _dhcp_clues(network, list(signals.offers), evidence, contradictions)
    hosts = {s.address for s in signals.heard if _inside(s.address, network.subnets)}
    if hosts:
        evidence.append(Clue(kind="heard", weight=WEIGHTS["heard"], zh=f"听到登记网段内 {len(hosts)} 台主机的 ARP",
                             en=f"heard ARP from {len(hosts)} host(s) inside the registered subnets"))
    kinds = {c.kind for c in evidence}
    tier = 3 if "gateway_mac" in kinds else 2 if kinds & DECISIVE else 1 if kinds else 0
    return CandidateScore(venue_id=venue_id, tier=tier, score=sum(c.weight for c in evidence), evidence=evidence,
                          contradictions=contradictions)


# ---------------------------------------------------------------------------
# The verdict


def match_venues(signals: VenueSignals, candidates: Sequence[tuple[str, Network]]) -> Identification:
    """Judge which of ``candidates`` (venue id, registered network) the signals come from.

    Pure: no I/O, the same answer for the same inputs in any order. Venue ids
    must be unique (ValueError otherwise). See the module text for the rules.
    """
    ids = [venue_id for venue_id, _ in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError("venue ids must be unique")
    heard_zh, heard_en = _heard_summary(signals)
    if not candidates:
        return Identification(outcome="none", reason=f"未预置任何场所（{heard_zh}） / no venue is staged ({heard_en})")
    seen = _seen_gateways(signals)
    scores = sorted((_score(v, n, signals, seen) for v, n in candidates),
                    key=lambda s: (-s.tier, -s.score, s.venue_id))
    fitting = [s for s in scores if s.fits]
    n = len(candidates)
    if not fitting:
        return Identification(outcome="none", reason=_none_reason(scores, n, heard_zh, heard_en), scores=scores)
    best = fitting[0]
    rivals = [s for s in fitting[1:] if s.tier == best.tier and best.score - s.score < MARGIN]
    if rivals:
        names = [s.venue_id for s in (best, *rivals)]
        missing = any(s.tier < 3 for s in (best, *rivals))
        hint_zh = "；请在档案中登记网关 MAC 以区分" if missing else ""
        hint_en = "; register the gateways' MACs in the profiles to tell them apart" if missing else ""
        return Identification(
            outcome="ambiguous", fits=names, scores=scores,
            reason=f"{heard_zh}；{len(names)} 个场所同样相符，无法区分：{_few(names)}{hint_zh} / "
                   f"{heard_en}; {len(names)} venues fit equally: {_few(names)}{hint_en}")
    clues_zh = "，".join(c.zh for c in best.evidence)
    clues_en = "; ".join(c.en for c in best.evidence)
    caveat_zh = "（网关 MAC 未登记，仅凭地址规划识别）" if best.tier < 3 else ""
    caveat_en = " (no gateway MAC registered: identified by the address plan only)" if best.tier < 3 else ""
    return Identification(outcome="match", chosen=best.venue_id, fits=[best.venue_id], scores=scores,
                          reason=f"已识别场所 {best.venue_id}：{clues_zh}{caveat_zh} / identified venue "
                                 f"{best.venue_id}: {clues_en}{caveat_en}")


def _none_reason(scores: list[CandidateScore], n: int, heard_zh: str, heard_en: str) -> str:
    """What was heard, and for the venues that came closest, what ruled each out."""
    ruled_out = [s for s in scores if s.contradictions and any(c.kind in DECISIVE for c in s.evidence)]
    ruled_out += [s for s in scores if s.contradictions and s not in ruled_out]
    details_zh = [f"{s.venue_id}：{s.contradictions[0].zh}" for s in ruled_out[:SHOWN]]
    details_en = [f"{s.venue_id}: {s.contradictions[0].en}" for s in ruled_out[:SHOWN]]
    more_zh = f"（{'；'.join(details_zh)}）" if details_zh else ""
    more_en = f" ({'; '.join(details_en)})" if details_en else ""
    return (f"{heard_zh}，与已预置的 {n} 个场所均不符{more_zh} / "
            f"{heard_en}; matches none of the {n} staged venues{more_en}")
