"""A throw-away PostgreSQL database for the benchmarks that need one of their own.

Shared by benchmarks/monitor.py and benchmarks/disk.py (run as scripts: this folder is on
their ``sys.path``), so that a measurement never touches a database someone uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool


def temporary_database(server_url: str, prefix: str) -> tuple[str, Callable[[], None]]:
    """A new empty database ``<prefix>_<random>`` on the server (its URL), and a function
    dropping it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(server_url).set(database=name).render_as_string(hide_password=False), drop
