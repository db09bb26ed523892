"""What every ``cafe-probe`` command module shares: the Typer app, the consoles, the --home option, refusing.

probe/cli.py and the command modules beside it (cli_stage, cli_selftest,
cli_hardware, cli_autorun) each register their commands on :data:`app` and
import only this module for it, so none of them imports another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console

from probe.home import ProbeHome, default_home

__all__ = ["app", "out", "err", "EXIT_REFUSED", "HomeOption", "refuse", "open_home"]

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="网吧现场检查探针 / Internet-café inspection probe. 先读 README / see README.md.")
out = Console()
if not out.is_terminal:  # logs and pipes: wide enough that Chinese summaries are not cut
    out = Console(width=120)
err = Console(stderr=True)
if not err.is_terminal:
    err = Console(stderr=True, width=120)

EXIT_REFUSED = 2
HomeOption = Annotated[Optional[Path], typer.Option(
    "--home", envvar="CAFE_PROBE_HOME",
    help="探针目录：密钥、检查设备、发件箱（默认 /var/lib/cafe-probe）/ probe home: keys, pinned device, outbox")]


def refuse(message: str) -> NoReturn:
    """Print ``cafe-probe: message`` on stderr and exit 2 (the one way a command refuses)."""
    err.print(f"cafe-probe: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_REFUSED)


def open_home(path: Optional[Path]) -> ProbeHome:
    """The probe home named by --home / CAFE_PROBE_HOME, else the default one."""
    return ProbeHome(path or default_home())
