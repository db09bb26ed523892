"""Service signatures as data: shipped ones load and cite sources; a venue's own add to or replace them."""

from __future__ import annotations

import pytest

from probe.profile import ProfileError, parse_profile
from probe.rules import load_ruleset
from probe.signatures import Signature, SignatureError, effective_signatures, load_signature_files, signatures_sha256

PROFILE = """
venue: {id: T-1, name: 测试网吧, licensed_terminals: 4}
network: {subnets: [198.18.40.0/24]}
terminals: {first_address: 198.18.40.21}
servers:
  signatures:
    - {id: rtsp, name: 本店摄像机 RTSP, role: camera, ports: [8554], probe: "OPTIONS * RTSP/1.0\\r\\nCSeq: 1\\r\\n\\r\\n",
       match: '^RTSP/1\\.0 200', confidence: 0.8, confirmed: true, source: confirmed on site 2026-11-20}
    - {id: venue-billing, name: 本店计费, role: billing, product: venue-bill, ports: [7001], match: '^VB', confidence: 0.9,
       confirmed: false, source: technician}
"""


def test_shipped_signatures_are_sourced_and_generic():
    shipped = load_ruleset().signatures
    assert shipped and len({s.id for s in shipped}) == len(shipped)
    assert all(s.source.strip() for s in shipped)
    # café products are undocumented (LEGAL.md): nothing shipped claims to be one
    assert not {s.role for s in shipped} & {"billing", "audit", "realname_client"}


def test_a_venue_signature_replaces_a_shipped_one_by_id_and_adds_its_own(tmp_path):
    shipped = load_ruleset().signatures
    venue = parse_profile(PROFILE, tmp_path).servers.signatures
    merged = {s.id: s for s in effective_signatures(shipped, venue)}
    assert merged["rtsp"].ports == [8554] and merged["rtsp"].source.startswith("confirmed on site")
    assert "venue-billing" in merged and len(merged) == len({s.id for s in shipped} | {"venue-billing"})
    assert signatures_sha256(list(merged.values())) != signatures_sha256(shipped)
    assert signatures_sha256(list(merged.values())) == signatures_sha256(list(reversed(list(merged.values()))))


def test_matching_is_a_bounded_search_of_latin1_text():
    sig = Signature(id="x-1", name="x", role="database", ports=[1], match=r"^\xff\x00OK", confidence=0.5,
                    confirmed=False, source="test")
    assert sig.matches(b"\xff\x00OK rest") and not sig.matches(b"OK") and not sig.matches(None)
    port_only = Signature(id="x-2", name="x", role="diskless", ports=[3260], confidence=0.3, confirmed=False,
                          source="test")
    assert port_only.matches(None) and port_only.matches(b"anything")


def test_bad_signatures_are_refused_with_every_reason(tmp_path):
    (tmp_path / "a.yaml").write_text("signatures:\n  - {id: dup, name: a, role: camera, ports: [1], confidence: 0.1, "
                                     "confirmed: false, source: s}\n")
    (tmp_path / "b.yaml").write_text("signatures:\n  - {id: dup, name: b, role: camera, ports: [2], confidence: 0.1, "
                                     "confirmed: false, source: s}\n  - {id: bad, name: c, role: camera, ports: [3], "
                                     "match: '(', confidence: 0.1, confirmed: false, source: s}\n  - {id: udp, "
                                     "name: d, role: database, transport: udp, ports: [4], confidence: 0.1, "
                                     "confirmed: false, source: s}\n")
    with pytest.raises(SignatureError) as caught:
        load_signature_files(tmp_path)
    text = "\n".join(caught.value.problems)
    assert "not a valid regular expression" in text and "needs a probe payload" in text and "dup is defined twice" in text
    with pytest.raises(ProfileError, match="servers.signatures"):
        parse_profile(PROFILE.replace("role: billing", "role: bililng"), tmp_path)
