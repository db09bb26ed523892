"""Log retention against the lab's real OpenSSH servers (issue 6): what is read, what is judged, what is left.

The ``logs`` café has one log server with five generated folders, a second
server whose host key is not the pinned one, and a profile that also names
the router (no SSH: refused), a folder that does not exist and a wrong
password. Every expected day comes from the lab's truth (lab/logs.py), never
from this file.

The reads are the run's own (``observations.logs``). Until the run reads log
sources, they come from the same reader (probe.net.ssh.read_sources) called
in the probe's namespace with the staged profile, and the finding from the
run's observations with those reads put in; ``test_the_run_reads_the_log_sources``
fails until then.
"""

from __future__ import annotations

import json
import subprocess
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lab.build import running
from lab.logs import tree_digest
from probe.evaluate import evaluate
from probe.logdates import load_line_formats, read_local_folder
from probe.observations import LogSourceRead, Observations
from probe.profile import load_profile
from probe.rules import load_ruleset
from tests.conftest import new_lab_id, run_probe

pytestmark = pytest.mark.lab

CHECK = "LOG-RETENTION"
VENUE_TZ = ZoneInfo("Asia/Shanghai")

# The reader in the probe's namespace, as the run calls it; prints the reads as JSON.
READ_SCRIPT = r"""
import json, sys
from zoneinfo import ZoneInfo
from probe.logdates import load_line_formats
from probe.net.ssh import read_sources
from probe.profile import load_profile
sources = list(load_profile(sys.argv[1]).servers.log_sources)
reads = read_sources(sources, formats=load_line_formats(), tz=ZoneInfo("Asia/Shanghai"))
print(json.dumps([r.model_dump(mode="json") for r in reads]))
"""

# Lab-level facts, independent of the probe's reader: paramiko in the probe's namespace.
FACTS_SCRIPT = r"""
import json, socket, sys
import paramiko
from probe.profile import load_profile
facts = []
for s in load_profile(sys.argv[1]).servers.log_sources:
    row = {"address": str(s.address), "username": s.username}
    try:
        sock = socket.create_connection((str(s.address), s.port), timeout=30)  # timeouts only catch a hang
    except OSError as exc:
        row["connect"] = type(exc).__name__
        facts.append(row)
        continue
    t = paramiko.Transport(sock)
    try:
        t.start_client(timeout=30)
        key = t.get_remote_server_key()
        row["banner"] = t.remote_version
        row["host_key"] = f"{key.get_name()} {key.get_base64()}"
        if row["host_key"] == s.host_key:  # never send a credential to a server that is not the pinned one
            try:
                if s.key_file:
                    t.auth_publickey(s.username, paramiko.Ed25519Key.from_private_key_file(str(s.key_file)))
                else:
                    t.auth_password(s.username, s.password_file.read_text().strip())
                sftp = paramiko.SFTPClient.from_transport(t)
                row["login"] = "ok"
                row["top"] = {}
                for p in s.paths:
                    if p.name_pattern and "%H" in p.name_pattern:
                        continue  # the 20,000-file folder: listed once, by the reader
                    try:
                        row["top"][p.path] = sorted(sftp.listdir(p.path))
                    except IOError:
                        row["top"][p.path] = None
            except paramiko.AuthenticationException:
                row["login"] = "refused"
            except IOError as exc:
                row["sftp_error"] = str(exc)
    finally:
        t.close()
    facts.append(row)
print(json.dumps(facts))
"""


def _in_probe(lab, script: str, *args: str) -> list[dict]:
    proc = subprocess.run(lab.exec_argv(["python", "-c", script, *args]), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _finding(obs: Observations, profile, ruleset) -> dict:
    found = next(f for f in evaluate(obs, profile, ruleset) if f.check_id == CHECK)
    return found.model_dump(mode="json")


def _only(profile, source):
    """The profile with one log source (frozen models: copied, not changed)."""
    servers = profile.servers.model_copy(update={"log_sources": [source]})
    return profile.model_copy(update={"servers": servers})


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    out = tmp_path_factory.mktemp("logs")
    with running("logs", new_lab_id("lg")) as lab:
        truth = lab.truth()
        roots = [Path(s["root"]) for s in truth["log_servers"]]
        before = [tree_digest(r) for r in roots]
        logs_before = [(lab.state_dir / f"sshd{k}" / "sshd.log").stat().st_size for k in range(1, len(roots) + 1)]
        facts = _in_probe(lab, FACTS_SCRIPT, truth["profile"])
        run = run_probe(lab, out)
        profile, ruleset = load_profile(truth["profile"]), load_ruleset()
        wired = run["observations"].get("logs") is not None
        obs = Observations.model_validate(run["observations"])
        if not wired:  # the same reader, the same namespace, until the run calls it itself
            reads = [LogSourceRead.model_validate(r) for r in _in_probe(lab, READ_SCRIPT, truth["profile"])]
            obs = obs.model_copy(update={"logs": reads})
        finding = (next(f for f in run["findings"]["findings"] if f["check_id"] == CHECK) if wired
                   else _finding(obs, profile, ruleset))
        # One finding per problem source (or folder), from the same reads, to show each is inconclusive alone.
        alone = {}
        for i, (source, read) in enumerate(zip(profile.servers.log_sources, obs.logs)):
            if read.error:
                alone[read.error] = _finding(obs.model_copy(update={"logs": [read]}), _only(profile, source), ruleset)
            for path, folder in zip(source.paths, read.folders):
                if folder.error:
                    one_source = source.model_copy(update={"paths": [path]})
                    one_read = read.model_copy(update={"folders": [folder]})
                    alone["folder_" + folder.error] = _finding(obs.model_copy(update={"logs": [one_read]}),
                                                               _only(profile, one_source), ruleset)
        offline = {p.path: read_local_folder(roots[0] / p.path.lstrip("/"), p, load_line_formats(), VENUE_TZ)
                   for s in profile.servers.log_sources if str(s.address) == truth["log_servers"][0]["address"]
                   for p in s.paths}
        sshd_logs = [(lab.state_dir / f"sshd{k}" / "sshd.log").read_bytes()[n:].decode(errors="replace")
                     for k, n in enumerate(logs_before, start=1)]
        after = [tree_digest(r) for r in roots]
        yield {"truth": truth, "run": run, "wired": wired, "obs": obs, "finding": finding, "alone": alone,
               "profile": profile, "facts": facts, "before": before, "after": after, "offline": offline,
               "sshd_logs": sshd_logs}


def _sources(logs) -> list[tuple[object, LogSourceRead]]:
    return list(zip(logs["profile"].servers.log_sources, logs["obs"].logs))


def _server(logs, address: str) -> dict | None:
    return next((s for s in logs["truth"]["log_servers"] if s["address"] == address), None)


def _today(logs) -> date:
    """The run's day; the lab made its logs against its own day, so a run across midnight proves nothing."""
    today = date.fromisoformat(logs["finding"]["evidence"]["today"])
    if today.isoformat() != logs["truth"]["logs_today"]:
        pytest.skip(f"the run ({today}) and the lab ({logs['truth']['logs_today']}) straddle midnight")
    return today


def test_the_run_reads_the_log_sources(logs):
    assert logs["wired"], "observations.logs is None: probe/run.py does not read servers.log_sources yet"
    assert len(logs["run"]["observations"]["logs"]) == len(logs["profile"].servers.log_sources)


def test_the_lab_servers_are_real_sshd_with_their_own_keys(logs):
    """Lab facts, read with plain paramiko: banner, host keys, logins, the router refusing, the folders."""
    truth, facts = logs["truth"], logs["facts"]
    first, second = truth["log_servers"]
    assert first["host_key"] != second["host_key"] and first["host_key_pinned"] and not second["host_key_pinned"]
    for row in facts:
        server = _server(logs, row["address"])
        if server is None:  # the router: nothing listens on 22
            assert row == {"address": row["address"], "username": row["username"], "connect": "ConnectionRefusedError"}
            continue
        assert row["banner"].startswith("SSH-2.0-OpenSSH_") and row["host_key"] == server["host_key"]
    logins = [(r["address"], r["username"], r.get("login")) for r in facts if "banner" in r]
    assert logins.count((first["address"], "cafelab-log", "ok")) == 1
    assert (first["address"], "cafelab-key", "ok") in logins
    assert (first["address"], "cafelab-log", "refused") in logins  # the wrong password
    assert (second["address"], "cafelab-log", None) in logins  # never tried: not the pinned key
    listed = next(r for r in facts if r.get("login") == "ok" and r["username"] == "cafelab-log")["top"]
    for folder in first["folders"]:
        if folder["path"] in listed and not folder["recursive"]:
            assert len(listed[folder["path"]]) == folder["files"]
    assert listed["/var/log/nosuch"] is None


def test_oldest_newest_and_every_gap_per_folder_match_the_truth(logs):
    checked = 0
    for source, read in _sources(logs):
        server = _server(logs, str(source.address))
        if read.error or server is None:
            continue
        truth = {f["path"]: f for f in server["folders"]}
        for folder in read.folders:
            if folder.path not in truth:
                continue
            want = truth[folder.path]
            assert folder.ok and folder.error is None, folder
            assert (folder.oldest.isoformat(), folder.newest.isoformat()) == (want["oldest"], want["newest"])
            assert [[r.first.isoformat(), r.last.isoformat()] for r in folder.covered] == want["covered"]
            covered = folder.covered
            gaps = [[(a.last + timedelta(days=1)).isoformat(), (b.first - timedelta(days=1)).isoformat()]
                    for a, b in zip(covered, covered[1:])]
            assert gaps == want["gaps"]
            assert folder.files == want["files"] and folder.undated == 0
            if want["dated_by"] == "content":
                assert folder.dated_by_content == want["files"] and folder.bytes_read > 0
            else:
                assert folder.dated_by_name == want["files"] and folder.bytes_read == 0
            checked += 1
    assert checked == len(_server(logs, logs["truth"]["log_servers"][0]["address"])["folders"])


def _window_gaps(covered: list[list[str]], today: date, days: int) -> list[list[str]]:
    """Missing runs of days in [today - days, today - 1], from the truth's covered ranges (set arithmetic)."""
    have = {date.fromisoformat(a) + timedelta(days=i) for a, b in covered
            for i in range((date.fromisoformat(b) - date.fromisoformat(a)).days + 1)}
    runs: list[list[date]] = []
    for d in (today - timedelta(days=k) for k in range(days, 0, -1)):
        if d in have:
            continue
        if runs and runs[-1][1] == d - timedelta(days=1):
            runs[-1][1] = d
        else:
            runs.append([d, d])
    return [[a.isoformat(), b.isoformat()] for a, b in runs]


def test_the_finding_fails_the_short_folders_and_names_every_window_gap(logs):
    f, truth = logs["finding"], logs["truth"]
    today, days = _today(logs), f["evidence"]["retention_days"]
    assert f["status"] == "fail"
    first = truth["log_servers"][0]
    rows = {(s["address"], s["username"], d["path"]): d for s in f["evidence"]["sources"] for d in s["folders"]}
    short = []
    for folder in first["folders"]:
        row = next(d for (a, _, p), d in rows.items() if a == first["address"] and p == folder["path"])
        gaps = _window_gaps(folder["covered"], today, days)
        assert row["gaps"] == gaps and row["oldest"] == folder["oldest"] and row["newest"] == folder["newest"]
        meets = date.fromisoformat(folder["oldest"]) <= today - timedelta(days=days) and not gaps
        assert row["outcome"] == ("pass" if meets else "fail"), folder["path"]
        short += [] if meets else [folder["path"]]
    assert "/var/log/jifei" in short and len(short) < len(first["folders"])
    for path in short:
        assert path in f["summary_zh"] and path in f["summary_en"]


def test_a_mismatch_a_wrong_password_a_refused_port_and_a_missing_folder_are_each_inconclusive(logs):
    truth, alone = logs["truth"], logs["alone"]
    first, second = truth["log_servers"]
    reads = {(str(s.address), s.password_file.name if s.password_file else s.key_file.name): r
             for s, r in _sources(logs)}
    mismatch = reads[(second["address"], "ssh2-cafelab-log.pass")]
    assert (mismatch.ok, mismatch.error, mismatch.host_key_seen) == (False, "host_key_mismatch", second["host_key"])
    pinned = next(s.host_key for s in logs["profile"].servers.log_sources if str(s.address) == second["address"])
    assert mismatch.host_key_seen != pinned and not mismatch.folders
    assert reads[(first["address"], "ssh-wrong.pass")].error == "auth"
    assert reads[(truth["lan"]["router"]["address"], "ssh1-cafelab-log.pass")].error == "refused"
    good = reads[(first["address"], "ssh1-cafelab-log.pass")]
    assert good.ok and good.host_key_pinned and good.host_key_seen == first["host_key"]
    assert [(d.path, d.error) for d in good.folders if d.error] == [("/var/log/nosuch", "missing")]
    for code in ("host_key_mismatch", "auth", "refused", "folder_missing"):
        f = alone[code]
        assert f["status"] == "inconclusive", (code, f["summary_en"])
        (source,) = f["evidence"]["sources"]
        if code == "folder_missing":
            assert [d["error"] for d in source["folders"]] == ["missing"] and "/var/log/nosuch" in f["summary_en"]
        else:
            assert source["error"] == code and source["address"] in f["summary_en"]
    assert alone["host_key_mismatch"]["evidence"]["sources"][0]["host_key_seen"] == second["host_key"]
    assert set(alone) == {"host_key_mismatch", "auth", "refused", "folder_missing"}
    # The mismatching server never saw a credential: no login attempt at all in its log.
    assert "Accepted" not in logs["sshd_logs"][1] and "Failed" not in logs["sshd_logs"][1]


def test_the_servers_are_byte_for_byte_unchanged(logs):
    """Every file's bytes, name, size, mode and mtime, hashed before the reads and after the run."""
    assert logs["before"] == logs["after"]
    assert all(len(h) == 64 for h in logs["before"])


def test_over_ssh_and_offline_agree_on_every_folder(logs):
    """The same folder read over SFTP and read locally: same listing digest, same days, same counts."""
    for source, read in _sources(logs):
        if read.error or source.address != _first_address(logs):
            continue
        for folder in read.folders:
            local = logs["offline"][folder.path]
            assert local.listing_sha256 == folder.listing_sha256 and local.covered == folder.covered
            assert (local.files, local.error) == (folder.files, folder.error)


def _first_address(logs):
    return next(s.address for s in logs["profile"].servers.log_sources
                if str(s.address) == logs["truth"]["log_servers"][0]["address"])
