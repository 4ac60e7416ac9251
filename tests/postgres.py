"""A throwaway PostgreSQL server for tests (the rule catalog's second backend).

Uses the PostgreSQL binaries on PATH or under /usr/lib/postgresql (`.ci/run` installs them when
missing). PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from labelstore.localkafka.cluster import free_port


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} not found: install PostgreSQL (apt-get install postgresql)")
    return found


class PostgresServer:
    def __init__(self) -> None:
        # Not under pytest's temporary folder: that one is private to the user running the tests.
        self.directory = Path(tempfile.mkdtemp(prefix="labelstore-postgres-"))
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        if self._as:
            shutil.chown(self.directory, "postgres", "postgres")
        data = self.directory / "data"
        self._run(_binary("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._run(_binary("pg_ctl"), "-D", str(data), "-l", str(self.directory / "server.log"), "-w", "start",
                  "-o", f"-p {self.port} -k {self.directory} -h 127.0.0.1")
        return self

    def stop(self) -> None:
        self._run(_binary("pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, *command: str, check: bool = True) -> None:
        done = subprocess.run([*self._as, *command], capture_output=True, text=True, cwd=self.directory)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
