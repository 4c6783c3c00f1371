"""Exclusive locks on working folders, so that two runs never write into the same one.

The lock is an OS file lock (``flock``; ``msvcrt.locking`` on Windows) on ``<folder>/.lock``, which the kernel
releases when the holder dies, so a killed run's folder is taken over by the next run (which resumes from its
checkpoint). The file also records the holder's pid and host: the message names them, and on a file system
whose file locks do nothing a live holder on this host is still respected.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from headstart.errors import OutputLockedError, option

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

#: The lock file inside a working folder: the pid and host of the run writing there.
LOCK_FILE = ".lock"


def lock_folder(folder: Path) -> int:
    """Lock ``folder`` for this process: an open descriptor of ``folder/.lock``, locked exclusively, with this
    process's pid and host written in it. Closing the descriptor (or the process ending) releases the lock.

    Raises:
        OutputLockedError: Another live process holds the lock; the message names it and the folder.
    """
    path = folder / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(fd):
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputLockedError(f"{folder} is in use by another headstart run ({_describe(holder)}); wait "
                                    f"for it to finish, stop it, or choose another {option('out')}")
        # The holder may have removed or replaced the file between our open and our lock: then the lock is on
        # a file nobody else will look at, so start over with the one now at the path.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    holder = _read_holder(fd)
    if _alive_elsewhere(holder):
        # The lock itself is free but a live process wrote the file: a file system without working locks.
        os.close(fd)
        raise OutputLockedError(f"{folder} is in use by another headstart run ({_describe(holder)}); wait for "
                                f"it to finish or choose another {option('out')} (if no such run exists, delete "
                                f"{path})")
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode()
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, record)
    return fd


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 4096) or b"{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive_elsewhere(holder: dict[str, Any]) -> bool:
    """Whether ``holder`` names a live process other than this one on this host (a dead one's lock is stale)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid == os.getpid() or holder.get("host") != socket.gethostname():
        return False
    if fcntl is None:  # pragma: no cover - os.kill(pid, 0) terminates the process on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    if "pid" not in holder:
        return "a process that has not written its pid yet"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder['pid']} on {holder.get('host', '?')}, started {started}"
