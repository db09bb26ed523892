"""cafe-probe: the probe that a network-security officer plugs into a café switch.

Data flows one way: venue profile → collectors (probe.net) → observations →
checks (probe.checks) → findings → report.
"""

__version__ = "0.1.0"
