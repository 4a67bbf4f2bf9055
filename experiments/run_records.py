"""Run records of the benchmark scripts on disk (``rl_table.py``, ``tune.py``).

Each finished run is ``<runs_dir>/<key>.json``. While a run trains, ``<runs_dir>/<key>.running`` holds the pid of
the process training it: invocations that share a runs folder (two terminals, or a resumed table started beside a
running one) then never train the same run twice. A claim whose process is gone (a killed invocation) is taken
over. Claims are made under an exclusive lock on ``<runs_dir>/.claims.lock``, so a claim file is never seen half
written and two invocations never both take over the same stale claim. Pids and locks are only meaningful on one
machine, so the folder must not be shared between machines while runs train.
"""

from __future__ import annotations

import fcntl
import json
import os

CLAIM_SUFFIX = ".running"
LOCK_NAME = ".claims.lock"


def read_record(runs_dir: str, key: str, budget: int) -> dict | None:
    """The finished run ``key`` if its record is there and was trained on ``budget`` steps, else None."""
    path = os.path.join(runs_dir, key + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        record = json.load(fh)
    return record if record.get("budget") == budget else None


def write_record(runs_dir: str, key: str, record: dict) -> None:
    """Write the record whole or not at all (a reader never sees half a file)."""
    path = os.path.join(runs_dir, key + ".json")
    with open(path + ".tmp", "w") as fh:
        json.dump(record, fh)
    os.replace(path + ".tmp", path)


def claim(runs_dir: str, key: str) -> int | None:
    """Claim run ``key`` for this process. Returns None once claimed, or the pid of the live process of another
    invocation that holds the claim. Reading, taking over and writing a claim happen under one folder-wide lock."""
    path = os.path.join(runs_dir, key + CLAIM_SUFFIX)
    with open(os.path.join(runs_dir, LOCK_NAME), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        holder = _claim_holder(path)
        if holder is not None and holder != os.getpid() and _alive(holder):
            return holder
        # free, or stale (its process is gone, or a claim file without a pid): this process takes it
        with open(path + ".tmp", "w") as fh:
            fh.write(str(os.getpid()))
        os.replace(path + ".tmp", path)
        return None


def release(runs_dir: str, key: str) -> None:
    _remove(os.path.join(runs_dir, key + CLAIM_SUFFIX))


def _claim_holder(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (FileNotFoundError, ValueError):  # no claim, or one without a pid (not written by claim())
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        pass
    return True


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
