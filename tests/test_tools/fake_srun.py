"""A stand-in for Slurm's ``srun`` on one machine, for the tests of tools/slurm_*.sh.

``python fake_srun.py --opt=value ... COMMAND [ARGS]`` (options in ``--name=value`` form, as the
scripts write them) records the options and the command as JSON in the file named by
FAKE_SRUN_RECORD, then starts ``--ntasks`` copies of the command with the variables srun gives
each task (SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS, SLURM_NODELIST, SLURM_STEP_NODELIST; all
on ``localhost``), waits for them and exits with the first non-zero exit status.
"""

import json
import os
import subprocess
import sys


def main(argv):
    split = next(i for i, arg in enumerate(argv) if not arg.startswith('-'))
    options = dict(arg[2:].split('=', 1) for arg in argv[:split])
    command = argv[split:]
    with open(os.environ['FAKE_SRUN_RECORD'], 'w') as f:
        json.dump(dict(options=options, command=command), f)
    ntasks, per_node = int(options['ntasks']), int(options['ntasks-per-node'])
    tasks = []
    for rank in range(ntasks):
        env = dict(
            os.environ,
            SLURM_PROCID=str(rank),
            SLURM_LOCALID=str(rank % per_node),
            SLURM_NTASKS=str(ntasks),
            SLURM_NODELIST='localhost',
            SLURM_STEP_NODELIST='localhost',
        )
        tasks.append(subprocess.Popen(command, env=env))
    codes = [task.wait() for task in tasks]
    return next((code for code in codes if code != 0), 0)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
