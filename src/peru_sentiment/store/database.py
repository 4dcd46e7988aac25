"""Open the store's database and migrate it: SQLite (WAL) by default, PostgreSQL by URL.

Migrations are Alembic scripts shipped in this package (``migrations/``);
:func:`upgrade` applies the missing ones and :func:`open_store` refuses a
database this version cannot read (one migrated by a newer version).
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from peru_sentiment.errors import ConfigError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
DRIVERS = {"sqlite": "sqlite+pysqlite", "postgresql": "postgresql+psycopg"}  # the one driver of each database we ship
URL_HELP = "e.g. sqlite:///data/store/predictions.sqlite or postgresql://user:password@host:5432/dbname"


class StoreError(ConfigError):
    """The store's database cannot be reached, or is not at a migration this version knows."""


def parse_store_url(url: str) -> URL:
    """`url` as SQLAlchemy reads it, with our driver for PostgreSQL; ConfigError when it is not a store URL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"the store URL is malformed ({URL_HELP})") from None
    backend = parsed.get_backend_name()
    if backend not in DRIVERS:
        raise ConfigError(f"the store supports SQLite and PostgreSQL, not {backend!r} ({URL_HELP})")
    if parsed.drivername not in (backend, DRIVERS[backend]):
        raise ConfigError(f"use the URL without a driver or with {DRIVERS[backend]} ({URL_HELP})")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(f"an SQLite store needs a file path; an in-memory database loses everything ({URL_HELP})")
    return parsed.set(drivername=DRIVERS[backend])


def _sqlite_pragmas(connection, _record) -> None:
    """WAL lets readers (dashboards, review page) work while the writer writes; wait rather than fail on a lock."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")  # review items go with their prediction (retention)
    cursor.close()


def create_store_engine(url: str) -> Engine:
    """An engine on the store's database (an SQLite file's folder is created)."""
    parsed = parse_store_url(url)
    try:
        engine = create_engine(parsed, pool_pre_ping=True)
    except NoSuchModuleError as error:  # pragma: no cover - both drivers are dependencies
        raise ConfigError(f"no database driver for {parsed.drivername} ({error})") from None
    if parsed.get_backend_name() == "sqlite":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as error:
        raise StoreError(f"cannot open the store {engine.url.render_as_string()}: {error.orig}") from None


def upgrade(engine: Engine) -> str:
    """Apply the missing migrations; returns the revision the database is at now."""
    before = current_revision(engine)
    try:
        command.upgrade(_alembic_config(engine), "head")
    except CommandError as error:
        raise StoreError(
            f"the store {engine.url.render_as_string()} is at migration {before!r}, which this version does not "
            f"know ({error}); it was migrated by a newer peru-sentiment: upgrade this one, or use another database"
        ) from None
    after = current_revision(engine)
    if after != before:
        log.info("store %s migrated from %s to %s", engine.url.render_as_string(), before, after)
    return after


def open_store(url: str, migrate: bool = True) -> Engine:
    """An engine on a database at the latest migration (applied when `migrate`, else required)."""
    engine = create_store_engine(url)
    if migrate:
        upgrade(engine)
        return engine
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise StoreError(
            f"the store {engine.url.render_as_string()} is at migration {current!r}, not {head!r}; "
            "run `peru-sentiment store upgrade`"
        )
    return engine
