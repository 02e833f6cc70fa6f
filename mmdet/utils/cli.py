"""The tools' entry point: bad input ends a tool with one line on stderr, not a traceback.

Each tool keeps a ``main(argv=None)`` that raises (the tests call it in-process) and ends with
``if __name__ == '__main__': run_tool(main)``. The errors the package raises for bad input carry
a message that names the file, key or argument; ``run_tool`` prints it as
``<tool>: error: <message>`` and exits with status 1. ``SAI_DET_TRACEBACK=1`` in the environment
shows the traceback instead (for a bug report).
"""

import os
import sys

import torch

from .work_dir_lock import WorkDirLockedError

# Missing, unreadable or unwritable files (CheckpointReadError and ImageReadError are OSErrors),
# bad config keys and values, a work dir in use, a diverged training.
USER_ERRORS = (OSError, KeyError, ValueError, WorkDirLockedError, FloatingPointError)
TRACEBACK_ENV = 'SAI_DET_TRACEBACK'
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}  # the tools' --dtype


def run_tool(main, argv=None):
    """Return ``main(argv)``; on a ``USER_ERRORS`` exception print its message as one line and exit 1."""
    try:
        return main(argv)
    except USER_ERRORS as err:
        if os.environ.get(TRACEBACK_ENV) == '1':
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        sys.exit(f'{os.path.basename(sys.argv[0])}: error: {message}')
