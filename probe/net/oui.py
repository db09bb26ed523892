"""MAC vendor names from the IEEE registry files Debian ships (package ieee-data)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

__all__ = ["vendors"]

REGISTRY_DIR = Path("/usr/share/ieee-data")
# Longest assignments first so a MA-S block wins over the MA-L it sits in.
FILES = (("oui36.csv", 9), ("mam.csv", 7), ("oui.csv", 6))


def vendors(macs: Iterable[str], registry_dir: Path = REGISTRY_DIR) -> dict[str, str]:
    """Vendor per MAC for the MACs whose prefix the registry knows (others are absent).

    Only the prefixes asked for are kept, so a lookup costs one pass over the
    files and no large table in memory.
    """
    wanted = {m: m.replace(":", "").upper() for m in macs}
    found: dict[str, str] = {}
    for name, digits in FILES:
        prefixes = {hexmac[:digits] for m, hexmac in wanted.items() if m not in found}
        if not prefixes:
            break
        path = registry_dir / name
        try:
            with path.open(encoding="utf-8", errors="replace", newline="") as fh:
                table = {row[1].upper(): row[2].strip() for row in csv.reader(fh)
                         if len(row) > 2 and row[1].upper() in prefixes}
        except OSError:
            continue
        for mac, hexmac in wanted.items():
            if mac not in found and hexmac[:digits] in table:
                found[mac] = table[hexmac[:digits]]
    return found
