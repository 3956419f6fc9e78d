"""Alembic environment for the case store: async engine, migrations run through ``run_sync``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from center.db import Base, create_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade --sql``) without a database connection."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("the Alembic config names no database (sqlalchemy.url)")
    # The store's own engine: on SQLite its pragmas, so the file is in WAL from the start (a
    # file left in rollback-journal mode is switched by the store's first connections, and the
    # switch needs the file to itself: "database is locked" when two open it at once). No idle
    # limit inside a transaction: a data migration may compute for a while between statements.
    engine = create_engine(url, idle_in_transaction_s=0)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
