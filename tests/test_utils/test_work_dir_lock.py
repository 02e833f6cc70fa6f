"""Two trainings in one work dir: the second is refused naming the first's pid; the lock of a
killed run is taken over; a clean exit releases it (issue 22, case 3)."""

import os
import signal
import subprocess
import sys

import pytest

from mmdet.utils.work_dir_lock import LOCK_NAME, WorkDirLockedError, work_dir_lock

# holds the lock of argv[1] until a line arrives on stdin; a refusal prints its message, exit 3
HOLDER = """
import sys
from mmdet.utils.work_dir_lock import WorkDirLockedError, work_dir_lock
try:
    with work_dir_lock(sys.argv[1]):
        print('locked', flush=True)
        sys.stdin.readline()
except WorkDirLockedError as err:
    print(err, flush=True)
    sys.exit(3)
"""


def _holder(work_dir):
    """A process that holds the lock (its first line of output says so)."""
    proc = subprocess.Popen(
        [sys.executable, '-c', HOLDER, str(work_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == 'locked'
    return proc


def test_second_process_is_refused_until_the_first_ends(tmp_path):
    first = _holder(tmp_path)
    try:
        with pytest.raises(
            WorkDirLockedError, match=rf'in use by another training \(process {first.pid} on host'
        ):
            with work_dir_lock(str(tmp_path)):
                pass
        second = subprocess.run(
            [sys.executable, '-c', HOLDER, str(tmp_path)], capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 3 and f'process {first.pid} on host' in second.stdout
    finally:
        first.communicate('\n', timeout=60)
    assert first.returncode == 0 and not (tmp_path / LOCK_NAME).exists()  # released on exit
    with work_dir_lock(str(tmp_path)):  # free again, nothing stale to report
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    killed = _holder(tmp_path)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert (tmp_path / LOCK_NAME).exists()  # left behind, but no process holds it
    with pytest.warns(
        UserWarning, match=rf'took over the lock of process {killed.pid} on host .* ended without'
    ):
        with work_dir_lock(str(tmp_path)):
            other = subprocess.run(
                [sys.executable, '-c', HOLDER, str(tmp_path)], capture_output=True, text=True, timeout=60
            )
            assert other.returncode == 3 and f'process {os.getpid()} on host' in other.stdout
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_is_released_when_the_body_raises(tmp_path):
    with pytest.raises(KeyError):
        with work_dir_lock(str(tmp_path)):
            raise KeyError('training failed')
    assert not (tmp_path / LOCK_NAME).exists()
    with work_dir_lock(str(tmp_path)):
        pass
