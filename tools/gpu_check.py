"""The GPU check: one command that verifies the GPU paths, then times them, in one time box.

    python3 tools/gpu_check.py [--dry] [--out DIR] [--total-s S] [--skip STAGE ...] [--commit C]
    bash tools/gpu_check.sh                      (the same; DRY=1 adds --dry)
    python tools/gpu_check.py --fetch-wheels     (here, before a GPU session: the WHEELS into .whl/)

Stages, in order; each has its own time limit (cut to what is left of ``--total-s``), and a
failure or a timeout in one never stops the next:
  environment  the GPU, driver, torch, Triton and nvcc versions
  deps         the wheels in .whl/ (WHEELS: what the GPU image lacks) installed into /tmp/site
  build        the compiled ops in place, CUDA kernels for sm_90 (H100 / H200)
  kernels      pytest -m gpu tests/test_ops: compiled CUDA and Triton kernels vs the references
  models       pytest -m gpu tests/test_models: exact sparse == dense-masked on CUDA (backbone
               and detector), train and eval steps
  train        pytest -m gpu test_gpu_train.py: float16 + GradScaler resumed exactly; a
               1-process NCCL DDP train + test through tools/dist_train.sh / dist_test.sh
  graphs       pytest -m gpu: CUDA-graph capture and replay of every benchmark variant
  bench_b1     tools/benchmark.py, fp16, 992 x 1664, batch 1: dense-dcn, dense, and the
               SparseResNet dense-masked (masked@G) and exact sparse (sparse@G) at 71.4, 164.8
               GFLOPs and density 1, as CUDA graphs, with a kernel profile of each
  bench_b8     the same at batch 8, no profile
  detector     the whole detector, dense-DCN vs sparse@71.4, batch 1, per part (--stages)
  train_step   a float16 training step (GradScaler) of the dense-DCN and the sparse detector,
               batch 2, with the peak memory (--what train)
The tests compile every Triton kernel once (MMDET_TRITON_AUTOTUNE=0); so do the benchmarks,
unless ``--autotune``. The kernels and models stages run their tests in one pytest process per
core (pytest-xdist, ``parallel_test_processes``). The summary (printed last, and
$OUT/summary.txt) is one table: each stage's result, time and headline (test counts, benchmark
rows, speed targets, failed tests).
$OUT gets 8 files: summary.txt, setup.log, tests.log, bench.log, bench_b1.json, bench_b8.json,
bench_detector.json, bench_train.json.

``--dry`` runs on a machine without a GPU whatever does not need one, so that the GPU run cannot
die of a typo: environment without nvidia-smi; deps checks the wheels (one of each, installable
on CPython 3.12 x86-64) without installing; build constructs the CUDA extension without
compiling it (CI compiles it); the test stages run the same pytest commands (the GPU tests are
collected and skipped), plus the CPU twins: the Triton kernels under TRITON_INTERPRET=1 and
compiled for Hopper, the mixed-precision resume and the 1-process gloo DDP train + test; the
benchmarks run the same commands on the CPU at 64 x 96 in fp32, once (batch 2 for 8). About 7
minutes on a 2-core machine (its box: ``--total-s`` 640).
"""

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = 'configs/sparse_resnet_101_faster_rcnn_sparse_loss_weight_0_2.py'
SITE = '/tmp/site'  # where the device README installs carried wheels
# what the GPU image lacks (KINDS.md of the device docs lists what it has), pinned as tested here
WHEELS = {
    'mmengine': '0.10.7',
    'mmcv-lite': '2.2.0',
    'pycocotools': '2.0.11',
    'addict': '2.4.0',
    'termcolor': '3.3.0',
    'yapf': '0.43.0',
    'platformdirs': '4.14.9',
}
# the GPU machine's Python, as pip download and pip install --dry-run spell it
TARGET = ['--python-version', '3.12', '--implementation', 'cp'] + [
    arg
    for tag in ('manylinux_2_28', 'manylinux_2_27', 'manylinux_2_17', 'manylinux2014', 'manylinux1')
    for arg in ('--platform', f'{tag}_x86_64')
]
STAGES = ('environment', 'deps', 'build', 'kernels', 'models', 'train', 'graphs')
STAGES += ('bench_b1', 'bench_b8', 'detector', 'train_step')
LOGS = {'environment': 'setup', 'deps': 'setup', 'build': 'setup'}  # the rest: tests or bench
# the time box of a GPU run; a dry run's kernels stage has DRY_EXTRA_S more (its CPU twins: Hopper
# compiles and interpreted kernels, 280 s at `ac18766`), and so has its box (in a box of 460 s that
# dry run took 418 s, its last stages close to being cut)
TOTAL_S = 460
DRY_EXTRA_S = 180
PYTEST_SUMMARY = re.compile(r'\b\d+ (passed|failed|skipped|errors?|deselected)\b.* in [\d.]+s')


@dataclass
class Stage:
    """A named list of commands (argv lists, run one after another from the repository root) with
    one time limit in seconds for them all; ``env``: variables added for these commands."""

    name: str
    limit: int
    commands: list
    env: dict = field(default_factory=dict)
    out: Path | None = None  # a benchmark's results file, for the summary


def normalised(name):
    """A distribution name as wheel file names spell it: 'mmcv-lite' -> 'mmcv_lite'."""
    return re.sub(r'[-_.]+', '_', name).lower()


def wheel_problems(folder):
    """What keeps the wheels in ``folder`` from installing as the deps stage needs: a package of
    WHEELS without a wheel, or with two (pip then refuses the whole set); [] if none."""
    found = {}
    for path in sorted(Path(folder).glob('*.whl')):
        found.setdefault(normalised(path.name.split('-')[0]), []).append(path.name)
    problems = []
    for name in WHEELS:
        files = found.get(normalised(name), [])
        if not files:
            problems.append(f'no wheel of {name} in {folder} (python tools/gpu_check.py --fetch-wheels)')
        elif len(files) > 1:
            problems.append(f'{len(files)} wheels of {name} in {folder}, keep one: {", ".join(files)}')
    return problems


def wheel_files(folder):
    return [str(p) for p in sorted(Path(folder).glob('*.whl'))]


def pytest_cmd(py, marker, *paths, workers=1):
    """pytest with ``marker`` over ``paths``; ``workers`` > 1: that many processes (pytest-xdist)."""
    parallel = ['-n', str(workers)] if workers > 1 else []
    return [py, '-m', 'pytest', '-v', '-rfE', '-p', 'no:cacheprovider', '-m', marker, *parallel, *paths]


def parallel_test_processes():
    """Processes for the kernels and models stages: Triton compiles each specialisation of a
    kernel on first use, on one core (the larger ones take 10-25 s for sm_90 on the 2-core dev
    machine), and the 352 GPU tests of tests/test_ops and tests/test_models make dozens of them:
    one after another they would use up those stages' limits on a cold machine (an earlier run
    spent its batch-1 benchmark's 170 s compiling), so they compile in parallel, one process per
    core up to 16. The other test stages run in one process: NCCL ports, timing, CUDA graphs."""
    return min(16, os.cpu_count() or 1)


def bench_cmd(py, dry, batch, out, *extra):
    """tools/benchmark.py on CONFIG: fp16 at 992 x 1664 on the GPU; dry: fp32 at 64 x 96, once."""
    if dry:
        where = '--device cpu --dtype fp32 --resolution 64 --repeats 1 --warmup 0'.split()
    else:
        where = '--device cuda --dtype fp16 --resolution 1000'.split()
    return [py, 'tools/benchmark.py', CONFIG, *where, '--batch', str(batch), '--out', str(out), *extra]


def stages(args):
    """The stages of this run (``args.dry``: their dry form)."""
    py, dry, out = sys.executable, args.dry, Path(args.out)
    versions = (
        'import sys, torch, triton; print(sys.version.split()[0], torch.__version__, "cuda", '
        'torch.version.cuda, "triton", triton.__version__, '
        'torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")'
    )
    if dry:
        environment = [[py, '-c', versions]]
        deps = [
            [py, __file__, '--check-wheels', args.wheels],
            [py, '-m', 'pip', 'install', '--dry-run', '-q', '--no-index', '--no-deps', '--only-binary=:all:',
             *TARGET, '--target', str(out / 'site'), *wheel_files(args.wheels)],  # nothing is written there
        ]  # fmt: skip
        build = [[py, 'setup.py', '--version']]  # constructs the extension (FORCE_CUDA), compiles nothing
        build_env = dict(FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0')
        cuda_check = ''
    else:
        environment = [
            ['nvidia-smi', '--query-gpu=name,driver_version,memory.total', '--format=csv'],
            ['nvcc', '--version'],
            [py, '-c', versions + '; assert torch.cuda.is_available(), "torch sees no GPU"'],
        ]
        deps = [
            [py, __file__, '--check-wheels', args.wheels],
            # the device README's command
            [py, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--no-compile', '--no-cache-dir',
             '--upgrade', '--target', SITE, *wheel_files(args.wheels)],
            [py, '-c', 'import mmengine, mmcv, pycocotools.coco; print("mmengine", mmengine.__version__)'],
        ]  # fmt: skip
        build = [[py, 'setup.py', 'build_ext', '--inplace']]
        build_env = dict(TORCH_CUDA_ARCH_LIST='9.0', MAX_JOBS=str(os.cpu_count() or 8))
        cuda_check = "; e = ops.ext(); assert e is not None and e.WITH_CUDA, 'mmdet._ext has no CUDA kernels'"
    build.append([py, '-c', f'import mmdet.ops as ops; print(ops.backend_summary()){cuda_check}'])

    tests = {
        'kernels': ['tests/test_ops'],
        'models': ['tests/test_models'],
        'train': ['tests/test_tools/test_gpu_train.py'],
        'graphs': ['tests/test_tools/test_benchmark.py', 'tests/test_utils/test_timing.py'],
    }
    workers = parallel_test_processes()
    test_cmds = {
        name: [pytest_cmd(py, 'gpu', *paths, workers=workers if name in ('kernels', 'models') else 1)]
        for name, paths in tests.items()
    }
    if dry:  # the CPU twins
        test_cmds['kernels'] += [
            [py, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tests/test_ops/test_triton_compile.py'],
            ['env', 'TRITON_INTERPRET=1', *pytest_cmd(py, 'not gpu', 'tests/test_ops/test_triton.py')],
        ]
        test_cmds['train'] = [pytest_cmd(py, 'not gpu', *tests['train'])]

    variants = '--variants dense-dcn dense masked sparse --target-gflops 71.4 164.8 full'.split()
    timing = [] if dry else '--repeats 10 --warmup 3'.split()
    detector = '--what detector --variants dense-dcn sparse --target-gflops 71.4 --stages'.split()
    detector += [] if dry else '--repeats 5 --warmup 2'.split()
    training = '--what train --variants dense-dcn sparse'.split()
    training += [] if dry else '--repeats 5 --warmup 2'.split()
    bench_env = {} if args.autotune else dict(MMDET_TRITON_AUTOTUNE='0')
    benches = []
    for name, limit, batch, extra in (
        ('bench_b1', 120, 1, [*variants, *timing, '--profile', '12']),
        ('bench_b8', 90, 2 if dry else 8, [*variants, *timing]),
        ('detector', 60, 1, detector),
        ('train_step', 60, 1 if dry else 2, training),
    ):
        results = out / f'bench_{name.removeprefix("bench_").removesuffix("_step")}.json'
        benches.append(Stage(name, limit, [bench_cmd(py, dry, batch, results, *extra)], bench_env, results))
    return [
        Stage('environment', 20, environment),
        Stage('deps', 30, deps),
        Stage('build', 150, build, build_env),
        # the dry twins (Hopper compiles, interpreted kernels) take longer than the GPU's tests
        Stage('kernels', 120 + DRY_EXTRA_S * dry, test_cmds['kernels'], dict(MMDET_TRITON_AUTOTUNE='0')),
        Stage('models', 60, test_cmds['models'], dict(MMDET_TRITON_AUTOTUNE='0')),
        Stage('train', 90, test_cmds['train'], dict(MMDET_TRITON_AUTOTUNE='0')),
        Stage('graphs', 60, test_cmds['graphs'], dict(MMDET_TRITON_AUTOTUNE='0')),
        *benches,
    ]


def run_command(argv, env, limit, log):
    """Run ``argv`` in its own process group for at most ``limit`` seconds, its output appended to
    the open file ``log``; the whole group is ended at the limit. Returns the exit status, 124
    when timed out."""
    log.write(f'$ {" ".join(argv)}\n')
    log.flush()
    try:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    except OSError as err:  # e.g. no nvidia-smi
        log.write(f'{err}\n')
        return 127
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):  # the group: pytest, torchrun, their workers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        log.write(f'[gpu_check] timed out after {limit:.0f} s\n')
        return 124


def headline(stage, text, rc):
    """One line on what a stage gave: pytest's counts, a benchmark's row count, or the last line."""
    if stage.out and rc == 0 and Path(stage.out).is_file():
        rows = json.loads(Path(stage.out).read_text())['rows']
        return f'{len(rows)} rows, {sum(bool(r.get("graph")) for r in rows)} as CUDA graphs'
    counts = [m.group(0) for m in PYTEST_SUMMARY.finditer(text)]
    if counts:
        return ' | '.join(counts)
    if rc == 124:
        done = {k: len(re.findall(rf' {k.upper()}\b', text)) for k in ('passed', 'failed')}
        if any(done.values()):
            return f'timed out: {done["passed"]} passed, {done["failed"]} failed so far'
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith('$ ')]
    return lines[-1][:100] if lines else ''


def run_stage(stage, base_env, deadline, out):
    """Run one stage's commands (all of them, unless one times out) within its limit and the
    deadline, their output appended to its log in ``out``; -> (verdict, seconds, output, exit
    status: the first non-zero one, 124 for a timeout)."""
    left = int(deadline - time.monotonic()) - 5
    if left < 20:
        return 'SKIPPED', 0, f'only {max(left, 0)} s left of the time box', 0
    limit = min(stage.limit, left)
    env = dict(base_env, **stage.env)
    start = time.monotonic()
    rcs = []
    with tempfile.TemporaryFile('w+') as log:
        log.write(f'=== [{stage.name}] limit {limit} s\n')
        for argv in stage.commands:
            remaining = limit - (time.monotonic() - start)
            rcs.append(run_command(argv, env, remaining, log) if remaining >= 1 else 124)
            if rcs[-1] == 124:
                break
        log.seek(0)
        text = log.read()
    with open(out / f'{LOGS.get(stage.name, "bench" if stage.out else "tests")}.log', 'a') as f:
        f.write(text)
    print(text[-3000:], flush=True)
    failed = [rc for rc in rcs if rc != 0]
    verdict = 'ok' if not failed else 'TIMED OUT' if failed[0] == 124 else f'FAILED ({failed[0]})'
    return verdict, time.monotonic() - start, text, failed[0] if failed else 0


def run_all(todo, base_env, deadline, out):
    """Every stage in turn, whatever the ones before gave; -> [(stage, run_stage's result)]."""
    return [(stage, run_stage(stage, base_env, deadline, out)) for stage in todo]


def bench_lines(path):
    """The benchmark rows of a results file as short aligned lines, with the speed-ups."""
    rows = json.loads(Path(path).read_text())['rows']
    cols = ('variant', 'batch', 'median_ms', 'vs_dense_dcn', 'vs_dense', 'graph', 'peak_mem_mb')
    cells = [cols] + [
        tuple(f'{r[c]:.3g}' if isinstance(r.get(c), float) else str(r.get(c, '-')) for c in cols)
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return ['  ' + '  '.join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]


def summary(args, results, elapsed):
    """The summary table: one line per stage, then the benchmark rows, targets and failed tests."""
    mode = 'DRY run on the CPU' if args.dry else 'GPU run'
    autotune = 'autotuned' if args.autotune else 'untuned'
    lines = [
        f'gpu_check: {mode}, commit {args.commit}, {elapsed:.0f} s of {args.total_s} s; Triton {autotune}',
        f'{"stage":<12} {"result":<11} {"s":>4}  detail',
    ]
    for stage, (verdict, seconds, text, rc) in results:
        lines.append(f'{stage.name:<12} {verdict:<11} {seconds:4.0f}  {headline(stage, text, rc)}')
    for stage, (_, _, text, _) in results:
        if stage.out and Path(stage.out).is_file():
            lines.append(f'--- {stage.name} ({Path(stage.out).name})')
            lines += bench_lines(stage.out)
            lines += [
                f'  {line}' for line in text.splitlines() if line.startswith(('MET', 'MISSED', '[profile '))
            ]
    failures = [line for _, (_, _, text, _) in results for line in text.splitlines()]
    failures = [line[:160] for line in failures if line.startswith(('FAILED ', 'ERROR '))]
    if failures:
        lines.append(f'--- failed tests ({len(failures)})')
        lines += failures[:20]
    return '\n'.join(lines)


def fetch_wheels(folder):
    """pip download of WHEELS for the GPU machine's Python into ``folder`` (needs the registry)."""
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', *TARGET, '-d', folder]
    return subprocess.call(cmd + [f'{name}=={version}' for name, version in WHEELS.items()], cwd=REPO)


def commit():
    try:
        found = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return 'unknown'
    return found.stdout.strip() or 'unknown (no git here: pass --commit)'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dry', action='store_true', help='on a machine without a GPU: see above')
    parser.add_argument('--out', help='output folder (default: $OUT, else work_dirs/gpu_check[_dry])')
    parser.add_argument(
        '--total-s',
        type=int,
        help=f'time box of the whole run, seconds (default {TOTAL_S}; --dry: {TOTAL_S + DRY_EXTRA_S})',
    )
    parser.add_argument(
        '--skip', nargs='+', default=[], choices=STAGES, metavar='STAGE', help='stages not to run'
    )
    parser.add_argument(
        '--autotune', action='store_true', help='autotune the Triton kernels in the benchmarks'
    )
    parser.add_argument('--commit', default=None, help='the commit checked (default: git rev-parse HEAD)')
    parser.add_argument('--wheels', default=str(REPO / '.whl'), help='the folder of carried wheels')
    parser.add_argument('--fetch-wheels', action='store_true', help='download WHEELS into --wheels and exit')
    parser.add_argument('--check-wheels', metavar='DIR', help=argparse.SUPPRESS)  # the deps stage's check
    args = parser.parse_args(argv)
    args.out = (
        args.out
        or os.environ.get('OUT')
        or str(REPO / 'work_dirs' / ('gpu_check_dry' if args.dry else 'gpu_check'))
    )
    args.commit = args.commit or commit()
    args.total_s = args.total_s or TOTAL_S + DRY_EXTRA_S * args.dry
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.fetch_wheels:
        return fetch_wheels(args.wheels)
    if args.check_wheels:
        problems = wheel_problems(args.check_wheels)
        print('\n'.join(problems) or f'{len(WHEELS)} wheels, one of each: {", ".join(WHEELS)}')
        return 1 if problems else 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ('summary.txt', 'setup.log', 'tests.log', 'bench.log', 'bench_b1.json', 'bench_b8.json',
                 'bench_detector.json', 'bench_train.json'):  # fmt: skip
        (out / name).unlink(missing_ok=True)
    site = [] if args.dry else [SITE]
    base_env = dict(os.environ, PYTHONUNBUFFERED='1', PYTHON=sys.executable)
    base_env['PYTHONPATH'] = os.pathsep.join(
        [*site, str(REPO), *filter(None, [os.environ.get('PYTHONPATH')])]
    )
    start = time.monotonic()
    todo = [stage for stage in stages(args) if stage.name not in args.skip]
    results = run_all(todo, base_env, start + args.total_s, out)
    text = summary(args, results, time.monotonic() - start)
    (out / 'summary.txt').write_text(text + '\n')
    print(text)
    return 0 if all(verdict == 'ok' for _, (verdict, *_) in results) else 1


if __name__ == '__main__':
    sys.exit(main())
