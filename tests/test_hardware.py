"""Hardware profiles: the shipped ones, strict keys, the override file, board detection, LED and port
resolution (real files in tmp_path; real netlink, read-only, for the interfaces present)."""

from __future__ import annotations

from pathlib import Path

import pytest

import hardware.profiles as hp
from hardware.profiles import (
    ENV_VAR,
    PROFILE_NAMES,
    HardwareError,
    detect_profile,
    list_interfaces,
    load_hardware,
    resolve_port,
    resolve_ports,
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _make_leds(root: Path, *names: str) -> Path:
    for name in names:
        led = root / name
        led.mkdir(parents=True)
        (led / "brightness").write_text("0\n")
        (led / "max_brightness").write_text("1\n")
        (led / "trigger").write_text("none [mmc0] timer\n")
    return root


def test_shipped_profiles_load_with_their_ports_leds_and_rights() -> None:
    for name in PROFILE_NAMES:
        profile = load_hardware(name)
        assert profile.name == name
        assert profile.description.zh and profile.description.en
        assert list(profile.capture.capabilities) == ["CAP_NET_RAW", "CAP_NET_ADMIN"]
        assert profile.capture.user == "cafe-probe"
        assert 0 < profile.clock_tolerance <= 60
        assert profile.min_free_bytes >= 100 * 1024 * 1024
        assert profile.leds_root == Path("/sys/class/leds")
    for pi in ("pi4", "pi5"):
        profile = load_hardware(pi)
        assert profile.led_names == {"status": ("ACT", "led0"), "alert": ("PWR", "led1")}
        assert profile.cafe_port.matches("eth0") and profile.cafe_port.matches("end0")
        assert not profile.cafe_port.matches("eth1")
        assert profile.officer_link.kind == "wifi" and profile.officer_link.matches("wlan0")
    assert load_hardware("pi4").detect == "Raspberry Pi 4" and load_hardware("pi5").detect == "Raspberry Pi 5"
    laptop = load_hardware("laptop")
    assert laptop.detect is None
    assert laptop.leds == {} and laptop.all_led_names() == []
    assert laptop.cafe_port.matches("enp0s31f6") and laptop.cafe_port.matches("eth0")
    assert not laptop.cafe_port.matches("wlp2s0")
    assert laptop.officer_link.matches("wlp2s0")


def test_unknown_keys_and_bad_values_are_one_line_naming_the_key(tmp_path: Path) -> None:
    base = (hp.PROFILES_DIR / "pi4.yaml").read_text(encoding="utf-8")
    cases = {
        "top.yaml": (base + "colour: red\n", "colour: 未知的键 / unknown key"),
        "nested.yaml": (base.replace("  kind: wifi", "  kind: wifi\n  speed: 100"), "officer_link.speed: 未知的键"),
        "both.yaml": (base.replace("match: [eth0, end0]", "match: [eth0]\n  name: eth0"),
                      "cafe_port: 值无效 / invalid value: give exactly one of name or match"),
        "kind.yaml": (base.replace("kind: wifi", "kind: carrier-pigeon"), "officer_link.kind: 值无效"),
        "cap.yaml": (base.replace("[CAP_NET_RAW, CAP_NET_ADMIN]", "[CAP_SYS_ADMIN]"), "capture.capabilities.0"),
        "led.yaml": (base.replace("[ACT, led0]", "[../../etc]"), "leds.status.0"),
        "missing.yaml": (base.replace("clock_tolerance_seconds: 5\n", ""), "clock_tolerance_seconds: 缺少必填的键"),
    }
    for file, (text, expected) in cases.items():
        with pytest.raises(HardwareError) as caught:
            load_hardware(_write(tmp_path / file, text))
        message = str(caught.value)
        assert expected in message, (file, message)
        assert "\n" not in message and message.startswith(str(tmp_path / file))
    with pytest.raises(HardwareError, match="unknown hardware profile 'pi3'"):
        load_hardware("pi3")
    with pytest.raises(HardwareError, match="no such hardware profile"):
        load_hardware(tmp_path / "absent.yaml")
    with pytest.raises(HardwareError, match="YAML syntax error"):
        load_hardware(_write(tmp_path / "broken.yaml", "name: [pi4\n"))


def test_override_file_names_a_profile_and_replaces_whole_keys(tmp_path: Path, monkeypatch) -> None:
    override = _write(tmp_path / "hardware.yaml", "profile: pi4\n"
                      "officer_link: {name: eth1, kind: usb-ethernet}\n"
                      "cafe_port: {name: eth0}\n"
                      "min_free_megabytes: 50\n")
    profile = load_hardware(override)
    assert profile.name == "pi4" and profile.source == override
    assert profile.officer_link.name == "eth1" and profile.officer_link.kind == "usb-ethernet"
    assert profile.cafe_port.name == "eth0" and profile.cafe_port.match is None  # replaced whole, not merged
    assert profile.min_free_bytes == 50 * 1024 * 1024
    assert profile.led_names["status"] == ("ACT", "led0")  # untouched keys come from the shipped profile

    monkeypatch.setenv(ENV_VAR, str(override))
    assert load_hardware().officer_link.name == "eth1"  # None: $CAFE_PROBE_HARDWARE first
    monkeypatch.delenv(ENV_VAR)

    with pytest.raises(HardwareError, match=r"profile: .*unknown hardware profile 'pi9'"):
        load_hardware(_write(tmp_path / "o2.yaml", "profile: pi9\n"))
    with pytest.raises(HardwareError, match="officer_lnk: 未知的键 / unknown key"):
        load_hardware(_write(tmp_path / "o3.yaml", "profile: pi5\nofficer_lnk: {name: eth1}\n"))


def test_board_detection_from_the_device_tree_model(tmp_path: Path, monkeypatch) -> None:
    model = tmp_path / "model"
    for text, expected in [(b"Raspberry Pi 4 Model B Rev 1.5\0", "pi4"), (b"Raspberry Pi 5 Model B Rev 1.0\0", "pi5"),
                           (b"Raspberry Pi 400 Rev 1.0\0", "pi4"), (b"Pine64 RockPro64 v2.1\0", "laptop")]:
        model.write_bytes(text)
        assert detect_profile(model) == expected, text
    assert detect_profile(tmp_path / "no-device-tree") == "laptop"
    # None with neither $CAFE_PROBE_HARDWARE nor the override file: the detected board.
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(hp, "OVERRIDE_FILE", tmp_path / "etc-cafe-probe-hardware.yaml")
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    assert load_hardware(None, model_file=model).name == "pi5"
    _write(tmp_path / "etc-cafe-probe-hardware.yaml", "profile: laptop\n")
    assert load_hardware(None, model_file=model).name == "laptop"  # the override file wins over detection


def test_leds_resolve_to_the_first_candidate_present(tmp_path: Path) -> None:
    def with_root(root: Path, extra: str = "") -> Path:
        return _write(tmp_path / f"{root.name}.yaml", f"profile: pi4\nleds_root: {root}\n{extra}")

    new_kernel = _make_leds(tmp_path / "new", "ACT", "PWR", "led0", "mmc0::")
    assert load_hardware(with_root(new_kernel)).leds == {"status": new_kernel / "ACT", "alert": new_kernel / "PWR"}
    old_kernel = _make_leds(tmp_path / "old", "led0", "led1")
    assert load_hardware(with_root(old_kernel)).leds == {"status": old_kernel / "led0", "alert": old_kernel / "led1"}
    empty = _make_leds(tmp_path / "empty")
    empty.mkdir()
    # None present: the first name, so the LED reports exactly what it looked for.
    assert load_hardware(with_root(empty)).leds == {"status": empty / "ACT", "alert": empty / "PWR"}
    keyboard = _make_leds(tmp_path / "kbd", "input3::numlock", "input3::capslock")
    laptop = load_hardware(_write(tmp_path / "laptop.yaml", f"profile: laptop\nleds_root: {keyboard}\n"
                                  "leds: {status: ['input*::capslock']}\n"))
    assert laptop.leds == {"status": keyboard / "input3::capslock"}
    assert laptop.all_led_names() == ["input*::capslock"]


def test_ports_resolve_to_exactly_one_interface_each(tmp_path: Path) -> None:
    pi4, laptop = load_hardware("pi4"), load_hardware("laptop")
    assert resolve_ports(pi4, ["lo", "eth0", "wlan0"]) == ("eth0", "wlan0")
    assert resolve_ports(pi4, ["end0", "wlan0", "docker0"]) == ("end0", "wlan0")
    assert resolve_ports(laptop, ["enp0s31f6", "wlp2s0", "docker0", "virbr0"]) == ("enp0s31f6", "wlp2s0")

    with pytest.raises(HardwareError) as caught:
        resolve_ports(laptop, ["enp0s31f6", "enx00e04c680001", "wlp2s0"])
    message = str(caught.value)
    assert "several interfaces match the café port (en*|eth*): enp0s31f6, enx00e04c680001" in message
    assert "cafe_port: {name: …}" in message and "\n" not in message
    with pytest.raises(HardwareError) as caught:
        resolve_ports(pi4, ["eth0", "usb0"])
    assert "no interface matches the officer link (wlan0); present: eth0, usb0" in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(HardwareError, match="same interface: eth0"):
        resolve_ports(load_hardware(_write(tmp_path / "same.yaml", "profile: laptop\ncafe_port: {name: eth0}\n"
                                           "officer_link: {match: 'eth*', kind: usb-ethernet}\n")), ["eth0"])


def test_interfaces_present_are_read_from_netlink() -> None:
    present = list_interfaces()  # read-only: the links of this namespace, loopback left out
    assert "lo" not in present and present == sorted(present)
    if present:
        spec = load_hardware("pi4").cafe_port.model_copy(update={"name": present[0], "match": None})
        assert resolve_port(spec, "cafe_port") == present[0]
