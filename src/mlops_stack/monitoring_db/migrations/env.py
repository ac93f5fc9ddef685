"""Alembic environment of the monitoring database.

``Database.migrate`` passes an open connection (holding the migration lock) through
``config.attributes["connection"]``. For a developer generating a revision, a
``sqlalchemy.url`` main option works too::

    from alembic import command
    from mlops_stack.monitoring_db.database import alembic_config
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", "sqlite:///scratch.db")
    command.upgrade(config, "head")
    command.revision(config, "what changed", autogenerate=True)
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from mlops_stack.monitoring_db.tables import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=config.get_main_option("version_table") or "alembic_version",
        # SQLite alters tables by copying them; batch mode lets later revisions do that.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("the monitoring database's migrations run online only (Database.migrate)")

_connection = config.attributes.get("connection")
if _connection is not None:
    _run(_connection)
else:
    _url = config.get_main_option("sqlalchemy.url")
    if not _url:
        raise RuntimeError("set the sqlalchemy.url main option, or pass a connection")
    _engine = create_engine(_url)
    with _engine.begin() as _new_connection:
        _run(_new_connection)
    _engine.dispose()
