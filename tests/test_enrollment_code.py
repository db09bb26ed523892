"""Enrolment without moving the private key: the one-line code, its parser, the CLI that prints it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from probe.cli import app
from probe.home import HomeError, ProbeHome, parse_enrollment_code
from probe.keys import key_id, public_line

runner = CliRunner()


def test_code_round_trip_and_qr_sized(tmp_path: Path) -> None:
    longest = "P" + "r" * 62 + "9"  # the longest probe id allowed (64 characters)
    for probe_id in ("probe-a", longest):
        home = ProbeHome(tmp_path / probe_id)
        ident = home.keygen(probe_id)
        code = home.enrollment_code()
        assert len(code) < 200 and "\n" not in code
        parsed_id, key = parse_enrollment_code(code + "\n")  # as pasted or scanned, with a line end
        assert parsed_id == probe_id and key_id(key) == ident.key_id
        assert code == f"cafe-probe-enrol:1:{probe_id}:{public_line(ident.public_key)}"


@pytest.mark.parametrize(("mangle", "reason"), [
    (lambda c: c.replace("cafe-probe-enrol", "cafe-probe-enroll"), "not a probe enrollment code"),
    (lambda c: c.split(":", 1)[1], "not a probe enrollment code"),
    (lambda c: c.replace(":1:", ":2:", 1), "unsupported enrollment code version '2'"),
    (lambda c: c.replace(":probe-a:", ":probe a:"), "invalid probe id"),
    (lambda c: c.replace(":probe-a:", "::"), "invalid probe id"),
    (lambda c: c[:-3], "bad key"),  # a truncated key: 30 bytes, not 32
    (lambda c: c[:-1] + "*", "bad key"),
    (lambda c: c.replace("ed25519:", "rsa:"), "the key must be an ed25519"),
    (lambda c: c + "A" * 200, "too long"),
    (lambda c: "", "not a probe enrollment code"),
])
def test_mangled_codes_refused_with_reason(tmp_path: Path, mangle, reason: str) -> None:
    home = ProbeHome(tmp_path / "home")
    home.keygen("probe-a")
    with pytest.raises(HomeError) as caught:
        parse_enrollment_code(mangle(home.enrollment_code()))
    message = str(caught.value)
    assert reason in message and "\n" not in message


def test_enrollment_and_keygen_print_the_code_never_the_private_key(tmp_path: Path) -> None:
    home = ProbeHome(tmp_path / "home")
    made = runner.invoke(app, ["keygen", "--home", str(home.root), "--probe-id", "probe-q"])
    assert made.exit_code == 0, made.stderr
    code = home.enrollment_code()
    assert f"登记码 enrollment code: {code}" in made.stdout
    shown = runner.invoke(app, ["enrollment", "--home", str(home.root)])
    assert shown.exit_code == 0, shown.stderr
    ident = home.identity()
    assert code in shown.stdout and ident.key_id in shown.stdout and str(home.public_key_path) in shown.stdout
    private = home.private_key_path.read_text()
    body = "".join(private.splitlines()[1:-1])
    for output in (made.stdout, shown.stdout):
        assert "PRIVATE" not in output and body not in output
    missing = runner.invoke(app, ["enrollment", "--home", str(tmp_path / "empty")])
    assert missing.exit_code == 2 and "keygen" in missing.stderr and missing.stdout == ""
