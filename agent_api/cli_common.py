"""What every ``cafe-agent`` command module shares: the --data/--db options, failing, opening the agent.

agent_api/cli.py holds the app and adds the sub-command groups of the modules
beside it (cli_draw, cli_plans, cli_registry, cli_packs); each of them imports
only this module for the shared parts, so none imports another or the app.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from agent_api import ApiError
from agent_api.app import Agent, open_agent
from agent_api.settings import Settings
from probe.keys import KeyFileError, check_secret_mode

__all__ = ["DataOpt", "DbOpt", "fail", "opened", "open_session", "read_password", "parse_date"]

DataOpt = Annotated[Path | None, typer.Option("--data", help="数据目录 / data directory (default $CAFE_AGENT_HOME "
                                                             "or ~/.local/share/cafe-agent)")]
DbOpt = Annotated[str | None, typer.Option("--db", help="数据库 URL / database URL (default: DIR/agent.db; "
                                                        "$CAFE_AGENT_DB)")]


def fail(message: str) -> typer.Exit:
    """Print ``错误 / error: message`` on stderr; the exit (status 1) to raise."""
    typer.echo(f"错误 / error: {message}", err=True)
    return typer.Exit(code=1)


@contextmanager
def opened(data: Path | None, db: str | None) -> Iterator[Agent]:
    """The opened agent; any refusal becomes one line on stderr and exit status 1."""
    try:
        agent = open_agent(Settings.from_env(data, db))
    except (KeyFileError, OSError) as exc:
        raise fail(str(exc)) from None
    try:
        yield agent
    except (ApiError, KeyFileError) as exc:
        raise fail(str(exc)) from None
    finally:
        agent.engine.dispose()


@contextmanager
def open_session(data: Path | None, db: str | None) -> Iterator[Session]:
    """A database session of the opened agent (see :func:`opened`)."""
    with opened(data, db) as agent, agent.sessions() as db_session:
        yield db_session


def read_password(password_file: Path | None) -> str:
    """The first line of a 0600 password file, or a password typed twice when no file is given."""
    if password_file is None:
        return typer.prompt("密码 / password", hide_input=True, confirmation_prompt=True)
    check_secret_mode(password_file)
    try:
        text = password_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"无法读取密码文件 / cannot read {password_file}: {exc}") from None
    return text.splitlines()[0] if text.strip() else ""


def parse_date(text: str, option: str) -> date:
    """A YYYY-MM-DD option's date; a wrong one is one line on stderr and exit status 1."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise fail(f"{option} 须为日期 YYYY-MM-DD / must be a date YYYY-MM-DD: {text!r}") from None
