"""The servers compared: ziti-scim on SQLite, ziti-scim on PostgreSQL, scim2-server's in-memory reference."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.common import TOKEN
from bench.procs import Server, Workdir, drop_pg, fresh_pg, ziti_server

LABELS = {
    "ziti-sqlite": "ziti-scim (SQLite)",
    "ziti-postgres": "ziti-scim (PostgreSQL)",
    "ziti-sqlite-prov": "ziti-scim (SQLite, provisioning)",
    "ziti-postgres-prov": "ziti-scim (PostgreSQL, provisioning)",
    "reference": "scim2-server in-memory",
}


@dataclass
class Target:
    name: str
    server: Server
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    database_url: str | None = None
    pg_database: str | None = None

    @property
    def base(self) -> str:
        return self.server.url + self.path

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)

    def start(self) -> Target:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def cleanup(self) -> None:
        self.stop()
        if self.pg_database:
            drop_pg(self.pg_database)


def database(kind: str, workdir: Workdir, name: str) -> tuple[str, str | None]:
    """A fresh database URL for ``kind`` ('sqlite' or 'postgres') and its PostgreSQL name, if any."""
    if kind == "sqlite":
        return workdir.sqlite_url(name), None
    pg_name = f"ziti_scim_bench_{name}".replace("-", "_")
    return fresh_pg(pg_name), pg_name


def ziti_target(kind: str, workdir: Workdir, name: str, *extra: str) -> Target:
    url, pg_name = database(kind, workdir, name)
    return Target(
        name=f"ziti-{kind}",
        server=ziti_server(url, *extra, name=f"ziti-{kind}-{name}"),
        path="/scim/v2",
        headers={"Authorization": f"Bearer {TOKEN}"},
        database_url=url,
        pg_database=pg_name,
    )


def reference_target() -> Target:
    return Target(name="reference", server=Server("reference", log_name="reference"), path="/v2")
