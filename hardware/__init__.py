"""Probe hardware: profiles (Raspberry Pi 4/5, a laptop), the status LED, the systemd unit, the udev rule and
the install. Data and hardware access only: nothing here imports the probe's run (the self-test and the clock
check are the probe's own, probe/selftest.py and probe/clock.py).

Modules are imported by name (``hardware.profiles``, ``hardware.led``, ``hardware.install``, …); this package
file imports none of them, so a problem in one never stops the others from loading.
"""
