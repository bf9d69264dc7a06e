"""Servers under test as subprocesses (one process each, so that the server's CPU is its own), and the
databases they use (a fresh SQLite file or a fresh PostgreSQL database per scenario)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from bench.common import free_port

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("ZITI_SCIM_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def read_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (peak) of a process, in kB, from /proc/<pid>/status."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process used so far (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """``python -m bench.serve <kind> ...`` on a free loopback port."""

    kind: str
    args: list[str] = field(default_factory=list)
    log_name: str = "server"
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def ready_path(self) -> str:
        return {"ziti": "/healthz", "reference": "/v2/ServiceProviderConfig", "emulator": "/__bench/stats"}[
            self.kind
        ]

    def start(self, timeout: float = 120.0) -> Server:
        self.port = free_port()
        logs = Path(tempfile.gettempdir()) / "ziti-scim-bench-logs"
        logs.mkdir(exist_ok=True)
        self.log_path = logs / f"{self.log_name}-{self.port}.log"
        handle = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the child's lifetime
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.serve", self.kind, "--port", str(self.port), *self.args],
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.kind} server exited: {self.log_tail()}")
                try:
                    if client.get(self.url + self.ready_path()).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.kind} server did not start: {self.log_tail()}")
                time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def memory_kb(self) -> dict[str, int]:
        return read_status(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def ziti_server(db_url: str, *extra: str, name: str = "ziti") -> Server:
    return Server("ziti", ["--db", db_url, *extra], log_name=name)


# -- databases -------------------------------------------------------------------------------------


class Workdir:
    """A temporary folder for the SQLite files of one run, removed at the end."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="ziti-scim-bench-"))
        self.count = 0

    def sqlite_url(self, name: str) -> str:
        self.count += 1
        return str(self.path / f"{self.count:02d}-{name}.db")

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


async def _pg_exec(statements: list[str]) -> None:
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(PG_ADMIN.replace("postgresql://", "postgres://"), timeout=5)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def pg_available() -> str | None:
    """The server's version string, or None when PostgreSQL cannot be reached."""

    async def probe() -> str:
        import asyncpg

        connection = await asyncpg.connect(PG_ADMIN.replace("postgresql://", "postgres://"), timeout=3)
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    try:
        return asyncio.run(probe())
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return None


def fresh_pg(name: str) -> str:
    """Drop and create database ``name``; return its URL."""
    asyncio.run(_pg_exec([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"']))
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_pg(name: str) -> None:
    asyncio.run(_pg_exec([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))
