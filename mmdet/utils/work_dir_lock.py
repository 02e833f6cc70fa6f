"""One training per work dir: an exclusive lock on ``<work_dir>/.train.lock``.

The lock is an ``fcntl.flock`` on that file, which holds the owner's pid and host. The kernel
drops it when its process ends, however it ends, so the lock of a killed run is stale and
simply taken over (with a warning naming the dead run); a clean exit also removes the file.
On a file system without ``flock`` training goes on unlocked, with a warning.
"""

import contextlib
import fcntl
import json
import os
import socket
import time
import warnings

from mmengine.dist import broadcast_object_list, get_dist_info

LOCK_NAME = '.train.lock'


class WorkDirLockedError(RuntimeError):
    """Another process holds the lock of the work dir."""


def _open_locked(path):
    """An fd of ``path`` holding an exclusive flock, or ``None`` if another process holds it.

    Retries when ``path`` was removed or replaced between opening and locking it (its owner was
    releasing it), so the fd returned always belongs to the file now at ``path``.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _read_owner(path):
    try:
        with open(path) as f:
            return json.loads(f.read() or 'null')
    except (OSError, ValueError):
        return None


def _describe(owner):
    if not isinstance(owner, dict):
        return 'another process'
    return f'process {owner.get("pid")} on host {owner.get("host")!r}, started {owner.get("started")}'


def _acquire(work_dir):
    """Take the lock: ``(fd, None)``, or ``(None, message)`` when another process holds it."""
    path = os.path.join(work_dir, LOCK_NAME)
    try:
        fd = _open_locked(path)
    except OSError as err:  # a file system without flock
        warnings.warn(
            f'work dir {work_dir!r} cannot be locked ({err}); training without the lock', stacklevel=4
        )
        return None, None
    if fd is None:
        return None, (
            f'work dir {work_dir!r} is in use by another training ({_describe(_read_owner(path))}); '
            'wait for it to end, or give this run another --work-dir'
        )
    stale = _read_owner(path)
    if stale is not None:
        warnings.warn(
            f'work dir {work_dir!r}: took over the lock of {_describe(stale)}, which ended without '
            'releasing it (killed?)',
            stacklevel=4,
        )
    owner = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime('%Y-%m-%d %H:%M:%S'))
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(owner).encode())
    os.fsync(fd)
    return fd, None


@contextlib.contextmanager
def work_dir_lock(work_dir):
    """Hold the work-dir lock for the body; raise ``WorkDirLockedError`` naming the owner's pid if
    another process holds it.

    Every rank must enter it: rank 0 takes the lock (``work_dir`` must exist) and tells the
    other ranks whether it did, so all ranks go on or all raise.
    """
    rank, world_size = get_dist_info()
    fd, refused = _acquire(work_dir) if rank == 0 else (None, None)
    if world_size > 1:
        shared = [refused]
        broadcast_object_list(shared, src=0)
        refused = shared[0]
    if refused:
        raise WorkDirLockedError(refused)
    try:
        yield
    finally:
        if fd is not None:
            os.remove(os.path.join(work_dir, LOCK_NAME))  # still locked: no one can take it in between
            os.close(fd)
