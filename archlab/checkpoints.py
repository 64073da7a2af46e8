"""Where a run's LangGraph checkpoints live: SQLite in the run directory, or a Postgres database.

`open_checkpointer(url, run_dir)` yields LangGraph's own saver for the setting
`checkpoints.url`: unset, a `SqliteSaver` on `<run>/checkpoints.sqlite`; a `postgresql://`
URL, a `PostgresSaver` (psycopg 3) on that database. Either way the graph runs with
synchronous durability (`archlab.session.drive`), so a killed run resumes from its last
finished node, and one run is one LangGraph thread (`thread_id` = the run id): many runs
share one database without seeing each other's state.

The Postgres tables are created (LangGraph's migrations) on first use, under an advisory
lock so that two runs starting at once on a fresh database do not race. A password may be
in the URL, in `PGPASSWORD` or in `~/.pgpass` (libpq reads the last two itself); every
message here shows the URL without it (`archlab.settings.without_password`).

What it does not do: copy checkpoints between stores (a run resumes from the store it
started with), or clean up finished runs' threads.
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qsl, urlsplit

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver

from archlab.settings import without_password

CONNECT_SECONDS = 10          # how long a Postgres connection may take before the store counts as down
SETUP_LOCK = 0x61726368       # pg_advisory_lock key held while LangGraph's migrations run ("arch")


class CheckpointStoreUnavailable(RuntimeError):
    """The checkpoint database cannot be reached or used: an infrastructure fault, not the run's."""


@contextmanager
def open_checkpointer(url: str | None, run_dir: Path) -> Iterator[BaseCheckpointSaver]:
    """The saver for `checkpoints.url` (None: SQLite in `run_dir`), open for the block; closed after."""
    if url is None:
        connection = sqlite3.connect(run_dir / "checkpoints.sqlite", check_same_thread=False)
        try:
            yield SqliteSaver(connection)
        finally:
            connection.close()
        return
    from langgraph.checkpoint.postgres import PostgresSaver
    with _connect(url) as connection:
        saver = PostgresSaver(connection)       # its own lock serialises the round's branches on one connection
        try:
            connection.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
            try:
                saver.setup()
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
        except _psycopg_errors() as exc:
            raise CheckpointStoreUnavailable(f"the checkpoint database {without_password(url)} refused LangGraph's "
                                             f"tables: {_first_line(exc, url)}; the user needs CREATE on the "
                                             "database") from None
        yield saver


def check_checkpoint_store(url: str | None) -> None:
    """Connect once and create the tables: CheckpointStoreUnavailable says what is wrong, before a run starts."""
    if url is None:
        return
    with open_checkpointer(url, Path(".")):
        pass


def _connect(url: str):
    try:
        import psycopg
        from psycopg.rows import dict_row
    except ImportError:
        raise CheckpointStoreUnavailable("checkpoints.url needs langgraph-checkpoint-postgres and psycopg: "
                                         "pip install 'archlab[postgres]'") from None
    try:
        return psycopg.Connection.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row,
                                          connect_timeout=CONNECT_SECONDS)
    except psycopg.Error as exc:
        raise CheckpointStoreUnavailable(f"no Postgres checkpoint store at {without_password(url)}: "
                                         f"{_first_line(exc, url)}. Start it (`docker compose up -d postgres`), give "
                                         "the password as PGPASSWORD or in ~/.pgpass, or unset checkpoints.url "
                                         "for SQLite in the run directory") from None


def _psycopg_errors() -> tuple[type[BaseException], ...]:
    import psycopg
    return (psycopg.Error,)


def _first_line(exc: BaseException, url: str) -> str:
    """The driver's message, first line only, with the URL's password (should it be quoted there) masked."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    password = urlsplit(url).password or dict(parse_qsl(urlsplit(url).query)).get("password")
    return line.replace(password, "***") if password else line
