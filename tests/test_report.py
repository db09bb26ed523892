"""Signed reports: DSSE encoding, keys, tampering, and offline verification in a fresh process."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings, strategies as st

from probe.dsse import EnvelopeError, pae, parse_envelope, sign_envelope
from probe.home import HomeError, ProbeHome
from probe.keys import KeyFileError, key_id, load_private_key, parse_public_key, public_line, raw_public
from probe.report import REPORT_TYPE, ReportError, sign_report, verify_report, verify_report_file
from tests.conftest import VENV_BIN
from tests.reportkit import make_payload, make_probe_key, make_report, tamper, write_run_dir


def test_pae_matches_the_specification_vector():
    # protocol.md of secure-systems-lab/dsse
    assert pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert pae("", b"") == b"DSSEv1 0  0 "
    assert pae("类型", "载荷".encode()) == "DSSEv1 6 类型 6 载荷".encode()  # lengths in bytes, not characters


@pytest.fixture()
def key(tmp_path):
    return make_probe_key(tmp_path)[0]


def _keys(priv):
    return {key_id(priv.public_key()): priv.public_key()}


def test_a_good_report_verifies_and_hands_on_the_signed_bytes(key):
    envelope, verified = make_report(key)
    again = verify_report(envelope, _keys(key))
    assert again.payload_bytes == verified.payload_bytes
    assert again.payload.venue.name == "星际网咖" and again.key_id == key_id(key.public_key())
    assert again.payload.started_at.utcoffset().total_seconds() == 8 * 3600


@pytest.mark.parametrize("field,index", [("payload", 0), ("payload", 100), ("payload", -1), ("sig", 0), ("sig", 63)])
def test_any_flipped_byte_is_refused(key, field, index):
    envelope, _ = make_report(key)
    with pytest.raises(ReportError, match="invalid signature|不是有效的 JSON|not a valid report"):
        verify_report(tamper(envelope, field, index), _keys(key))


def test_unknown_key_wrong_type_malformed_and_mismatched_key_id(key, tmp_path):
    envelope, _ = make_report(key)
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(ReportError, match="unknown key"):
        verify_report(envelope, _keys(stranger))
    # a keyid that names a trusted key does not help a signature by another key
    doc = json.loads(sign_envelope(REPORT_TYPE, b"{}", stranger))
    doc["signatures"][0]["keyid"] = key_id(key.public_key())
    with pytest.raises(ReportError, match="invalid signature"):
        verify_report(json.dumps(doc).encode(), _keys(key))
    other_type = sign_envelope("application/vnd.in-toto+json", b"{}", key)
    with pytest.raises(ReportError, match="wrong payload type"):
        verify_report(other_type, _keys(key))
    for junk in (b"", b"{", b"[]", b'{"payloadType": 1}', b"\xff\xfe", b'{"payloadType":"x","payload":"@@","signatures":[]}'):
        with pytest.raises(ReportError):
            verify_report(junk, _keys(key))
    with pytest.raises(ReportError, match="payload is not a valid report"):
        verify_report(sign_envelope(REPORT_TYPE, b'{"schema_version":"cafe-probe.report/1"}', key), _keys(key))
    # signed correctly, but the payload claims another probe key
    forged = make_payload(key).model_copy(update={"probe": make_payload(key).probe.model_copy(
        update={"key_id": key_id(stranger.public_key())})})
    from probe.report import canonical_bytes
    with pytest.raises(ReportError, match="another key"):
        verify_report(sign_envelope(REPORT_TYPE, canonical_bytes(forged), key), _keys(key))


def test_sign_report_refuses_inconsistent_payloads(key):
    payload = make_payload(key)
    with pytest.raises(ReportError, match="counts"):
        sign_report(payload.model_copy(update={"counts": {}}), key)
    with pytest.raises(ReportError, match="key_id"):
        sign_report(payload, Ed25519PrivateKey.generate())


@given(st.binary(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_envelope_parser_survives_garbage(data):
    try:
        parse_envelope(data)
    except EnvelopeError:
        pass


@given(st.dictionaries(st.sampled_from(["payloadType", "payload", "signatures", "x"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=40),
                                 st.lists(st.dictionaries(st.sampled_from(["keyid", "sig"]),
                                                          st.one_of(st.text(max_size=40), st.integers()),
                                                          max_size=2), max_size=3))))
@settings(max_examples=300, deadline=None)
def test_envelope_parser_survives_wrong_shapes(doc):
    try:
        verify_report(json.dumps(doc).encode(), {})
    except ReportError:
        pass


def test_key_files_mode_and_formats(tmp_path):
    priv, pub_path = make_probe_key(tmp_path)
    assert stat.S_IMODE((tmp_path / "probe.key").stat().st_mode) == 0o600
    line = public_line(priv.public_key())
    assert parse_public_key(line).public_bytes_raw() == raw_public(priv.public_key())
    assert parse_public_key(pub_path.read_text()).public_bytes_raw() == raw_public(priv.public_key())
    os.chmod(tmp_path / "probe.key", 0o644)
    with pytest.raises(KeyFileError, match="0600"):
        load_private_key(tmp_path / "probe.key")
    for bad in ("ed25519:AAAA", "ssh-ed25519 AAAA", "-----BEGIN PUBLIC KEY-----\nzz\n-----END PUBLIC KEY-----"):
        with pytest.raises(KeyFileError):
            parse_public_key(bad)


def test_keygen_cli_never_prints_the_private_key(tmp_path):
    home = tmp_path / "home"
    proc = subprocess.run([str(VENV_BIN / "cafe-probe"), "keygen", "--home", str(home), "--probe-id", "pi-07"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    secret = (home / "probe.key").read_text()
    body = "".join(secret.splitlines()[1:-1])
    assert body not in proc.stdout + proc.stderr and "PRIVATE" not in proc.stdout + proc.stderr
    ident = ProbeHome(home).identity()
    assert ident.probe_id == "pi-07" and ident.key_id in proc.stdout
    assert stat.S_IMODE((home / "probe.key").stat().st_mode) == 0o600
    again = subprocess.run([str(VENV_BIN / "cafe-probe"), "keygen", "--home", str(home)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (home / "probe.key").read_text() == secret
    with pytest.raises(HomeError, match="probe id"):
        ProbeHome(tmp_path / "h2").keygen("bad id/..")


def test_verify_offline_in_a_fresh_process_with_only_envelope_evidence_and_key(tmp_path, key):
    """Nothing but the envelope, the evidence files and the probe's public key: no agent, no profile."""
    run_dir = write_run_dir(tmp_path / "case", key).parent
    pub = tmp_path / "probe.pub"
    pub.write_text(public_line(key.public_key()))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # nothing inherited: no CAFE_PROBE_HOME, no agent
    cmd = [str(VENV_BIN / "cafe-probe"), "verify", str(run_dir / "report.dsse.json"), "--pubkey", str(pub)]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "VERIFIED" in ok.stdout and "observations.json, capture.pcap" in ok.stdout
    # evidence present but altered: refused in one line naming the file
    with (run_dir / "observations.json").open("ab") as fh:
        fh.write(b" ")
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert bad.returncode == 1 and "observations.json" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    # evidence absent: the signature still verifies, the report says which files were not there
    (run_dir / "observations.json").unlink()
    absent = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert absent.returncode == 0 and "not present: observations.json" in absent.stdout
    # another probe's key: refused
    other = tmp_path / "other.pub"
    other.write_text(public_line(Ed25519PrivateKey.generate().public_key()))
    wrong = subprocess.run(cmd[:-1] + [str(other)], capture_output=True, text=True, timeout=60, env=env)
    assert wrong.returncode == 1 and "unknown key" in wrong.stderr


def test_verify_report_file_refuses_evidence_names_that_walk(key, tmp_path):
    from probe.report import EvidenceFile
    with pytest.raises(ValueError):
        EvidenceFile(name="../etc/passwd", sha256="0" * 64, size=1)
    path = write_run_dir(tmp_path / "r", key)
    report, evidence = verify_report_file(path, key.public_key())
    assert sorted(evidence.matched) == ["capture.pcap", "observations.json"] and not evidence.absent


def test_a_run_never_overwrites_a_signed_run(tmp_path, probe_home):
    from probe.run import RunOptions, RunRefused, prepare
    from tests.conftest import ROOT

    (tmp_path / "report.dsse.json").write_bytes(b"{}")
    opts = RunOptions(profile=ROOT / "lab/scenarios/messy.profile.yaml", iface="eth0", out=tmp_path, home=probe_home)
    with pytest.raises(RunRefused, match="already holds a signed report"):
        prepare(opts)
    assert (tmp_path / "report.dsse.json").read_bytes() == b"{}"
