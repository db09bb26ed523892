"""Collectors: the only code that touches the network; each returns typed observations."""
