"""Data package: the ruleset."""
