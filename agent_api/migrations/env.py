"""Alembic environment of the cafe-agent schema.

At start-up the service hands in its own connection (``config.attributes
["connection"]``, see agent_api.db.migrate). From the alembic command line,
the URL is ``-x db=URL``, else ``-x data=DIR``, else CAFE_AGENT_DB /
CAFE_AGENT_HOME as the service reads them.
"""

from __future__ import annotations

from logging.config import fileConfig
from pathlib import Path

from alembic import context

from agent_api.db import Base, make_engine
from agent_api.settings import Settings

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: later migrations copy the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    x = context.get_x_argument(as_dictionary=True)
    if x.get("db"):
        return x["db"]
    if x.get("data"):
        return Settings.from_env(data=Path(x["data"])).database_url
    given = config.get_main_option("sqlalchemy.url")
    return given or Settings.from_env().database_url


given_connection = config.attributes.get("connection")
if given_connection is not None:
    # Embedded in the service: leave its logging alone.
    _configure_and_run(given_connection)
elif context.is_offline_mode():
    if config.config_file_name:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    if config.config_file_name:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _configure_and_run(conn)
    finally:
        engine.dispose()
