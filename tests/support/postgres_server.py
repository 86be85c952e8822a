"""A throwaway PostgreSQL server for the sweep tests: Debian's `initdb` and `pg_ctl` on a
temporary folder and a free port, torn down afterwards. As root, the server runs as the
`postgres` user (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.liveserver import free_port


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit()
                   else 0)
    return Path(found[-1]).parent if found else None


def missing_reason() -> str | None:
    """Why no server can be started here, or None."""
    if postgres_bin() is None:
        return "PostgreSQL is not installed (Debian: apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
    return None


@contextlib.contextmanager
def running_server() -> Iterator[str]:
    """Start a server; yield its SQLAlchemy URL (trust authentication, local only)."""
    binaries = postgres_bin()
    as_owner: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="digit-lab-pg-"))
    if os.geteuid() == 0:
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()
    try:
        subprocess.run([*as_owner, str(binaries / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "postgres", "--no-sync"], check=True, capture_output=True)
        subprocess.run([*as_owner, str(binaries / "pg_ctl"), "-D", str(data), "-l",
                        str(folder / "server.log"), "-w", "-t", "60", "-o",
                        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                        "start"], check=True, capture_output=True)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*as_owner, str(binaries / "pg_ctl"), "-D", str(data), "-m",
                            "immediate", "-w", "stop"], capture_output=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
