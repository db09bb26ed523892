"""Probe hardware: profiles (Raspberry Pi 4/5, a laptop), the status LED, the systemd unit, the udev rule,
the install, and the self-test.

Modules are imported by name (``hardware.profiles``, ``hardware.led``, ``hardware.install``, …); this package
file imports none of them, so a problem in one never stops the others from loading.
"""
