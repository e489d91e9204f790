"""Helpers shared by the fault tests: run the CLI as a real process, and check catalog invariants."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCESS_TIMEOUT = 120  # seconds; a hung child fails the test instead of hanging CI


@dataclass(frozen=True)
class Done:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"{' '.join(self.args)} -> {self.returncode}\nstdout: {self.stdout}\nstderr: {self.stderr[-3000:]}"


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment (CASCADE_HOME etc. set by conftest) plus the repo on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def run_python(*args: str, env: dict[str, str] | None = None, timeout: float = PROCESS_TIMEOUT) -> Done:
    """`python <args>` as a child process; killed (and the test failed) if it outlives `timeout`."""
    command = (sys.executable, *args)
    with subprocess.Popen(
        command, env=env or child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise AssertionError(f"{' '.join(command)} did not finish in {timeout} s\n{err[-3000:]}") from None
    return Done(tuple(args), process.returncode, out, err)


def cascade(*args: str, env: dict[str, str] | None = None, timeout: float = PROCESS_TIMEOUT) -> Done:
    """`python -m cascade_ci <args>` as a child process."""
    return run_python("-m", "cascade_ci", *args, env=env, timeout=timeout)


def cascade_killed_at(kill_at: str, *args: str, env: dict[str, str] | None = None) -> Done:
    """`cascade <args>` in a process that SIGKILLs itself at `kill_at` (see tests/faults/killpoint.py)."""
    return run_python("-m", "tests.faults.killpoint", *args, env=child_env(CASCADE_FAULT_KILL=kill_at, **(env or {})))


def catalog_db(home: Path) -> Path:
    return Path(home) / "catalog.db"


def assert_catalog_sound(home: Path) -> None:
    """SQLite integrity is ok, and every ref and every commit parent points at an existing commit."""
    with sqlite3.connect(catalog_db(home), timeout=30) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        dangling = db.execute(
            "SELECT r.name, r.hash FROM cascade_refs r LEFT JOIN cascade_commits c ON c.hash = r.hash "
            "WHERE c.hash IS NULL"
        ).fetchall()
        assert dangling == [], f"refs pointing at missing commits: {dangling}"
        orphans = db.execute(
            "SELECT c.hash FROM cascade_commits c LEFT JOIN cascade_commits p ON p.hash = c.parent "
            "WHERE c.parent IS NOT NULL AND p.hash IS NULL"
        ).fetchall()
        assert orphans == [], f"commits whose parent is missing: {orphans}"
    db.close()
