"""Bring the case store's schema up to date: ``alembic upgrade head``, run from code."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from center.errors import MigrationError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config built in code: no ``alembic.ini`` needed at run time."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    # ConfigParser interpolates '%', which URL-encoded passwords contain.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def _ensure_sqlite_directory(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


async def migrate(database_url: str) -> None:
    """Run every pending migration; raises ``MigrationError`` with the cause on failure.

    ``env.py`` runs its own event loop, so Alembic runs in a worker thread.
    """
    try:
        _ensure_sqlite_directory(database_url)
        await asyncio.to_thread(command.upgrade, alembic_config(database_url), "head")
    except (CommandError, SQLAlchemyError, OSError) as exc:
        raise MigrationError(f"cannot migrate the case store: {exc}") from exc
