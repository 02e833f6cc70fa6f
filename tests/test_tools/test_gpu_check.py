"""tools/gpu_check.py: time-boxed stages that never stop each other, the carried wheels, the GPU
run's commands checked without a GPU, and the dry run."""

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from tool_helpers import REPO, load_tool

gpu_check = load_tool('gpu_check')
bench = load_tool('benchmark')


def make_wheel(folder, name, version, tag='py3-none-any'):
    """A minimal wheel (metadata only) that pip accepts for ``tag``."""
    dist = f'{gpu_check.normalised(name)}-{version}'
    with zipfile.ZipFile(folder / f'{dist}-{tag}.whl', 'w') as wheel:
        info = f'{dist}.dist-info'
        wheel.writestr(f'{info}/METADATA', f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')
        wheel.writestr(f'{info}/WHEEL', f'Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n')
        wheel.writestr(f'{info}/RECORD', '')


@pytest.fixture
def wheels(tmp_path):
    """One wheel of each of gpu_check.WHEELS, pycocotools built for CPython 3.12 as on PyPI."""
    folder = tmp_path / 'wheels'
    folder.mkdir()
    for name, version in gpu_check.WHEELS.items():
        tag = 'cp312-abi3-manylinux2014_x86_64' if name == 'pycocotools' else 'py3-none-any'
        make_wheel(folder, name, version, tag)
    return folder


def _args(tmp_path, wheels, *extra):
    return gpu_check.parse_args(
        ['--out', str(tmp_path / 'out'), '--wheels', str(wheels), '--commit', 'c0ffee', *extra]
    )


def test_wheel_problems_name_the_missing_and_the_doubled(wheels):
    (wheels / 'platformdirs-4.14.9-py3-none-any.whl').unlink()
    make_wheel(wheels, 'mmcv-lite', '2.1.0')
    assert gpu_check.wheel_problems(wheels) == [
        f'2 wheels of mmcv-lite in {wheels}, keep one: mmcv_lite-2.1.0-py3-none-any.whl, '
        'mmcv_lite-2.2.0-py3-none-any.whl',
        f'no wheel of platformdirs in {wheels} (python tools/gpu_check.py --fetch-wheels)',
    ]


def _dry_deps(tmp_path, wheels):
    """(verdict, output) of the dry run's deps stage on ``wheels``."""
    deps = next(stage for stage in gpu_check.stages(_args(tmp_path, wheels, '--dry')) if stage.name == 'deps')
    (tmp_path / 'out').mkdir(exist_ok=True)
    [(_, result)] = gpu_check.run_all([deps], dict(os.environ), time.monotonic() + 60, tmp_path / 'out')
    return result[0], result[2]


def test_dry_deps_stage_refuses_a_wheel_the_gpu_python_cannot_install(tmp_path, wheels):
    assert _dry_deps(tmp_path, wheels)[0] == 'ok'
    for path in wheels.glob('pycocotools-*'):
        path.unlink()
    make_wheel(wheels, 'pycocotools', '2.0.11', 'cp311-cp311-manylinux2014_x86_64')  # not CPython 3.12
    verdict, text = _dry_deps(tmp_path, wheels)
    assert verdict == 'FAILED (1)' and 'is not a supported wheel on this platform' in text


def _alive(pid):
    status = Path(f'/proc/{pid}/status')
    return status.exists() and 'State:\tZ' not in status.read_text()


def test_a_stage_at_its_limit_ends_with_its_whole_process_group(tmp_path):
    pid_file = tmp_path / 'pid'
    with open(tmp_path / 'log', 'w') as log:
        start = time.monotonic()
        rc = gpu_check.run_command(
            ['sh', '-c', f'sleep 60 & echo $! > {pid_file}; wait'], dict(os.environ), 1, log
        )
    assert rc == 124 and time.monotonic() - start < 20
    deadline = time.monotonic() + 5
    while _alive(int(pid_file.read_text())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(pid_file.read_text()))  # the background child went with its shell


def test_stages_run_in_turn_whatever_the_ones_before_gave(tmp_path):
    py = sys.executable
    todo = [
        gpu_check.Stage('kernels', 30, [['false'], [py, '-c', 'print("still ran")']]),
        gpu_check.Stage('models', 2, [['sleep', '30'], [py, '-c', 'print("never ran")']]),
        gpu_check.Stage('train', 30, [[py, '-c', 'print("3 passed, 1 skipped in 0.12s")']]),
    ]
    results = gpu_check.run_all(todo, dict(os.environ), time.monotonic() + 100, tmp_path)
    assert [(stage.name, verdict) for stage, (verdict, *_) in results] == [
        ('kernels', 'FAILED (1)'), ('models', 'TIMED OUT'), ('train', 'ok'),
    ]  # fmt: skip
    log = (tmp_path / 'tests.log').read_text()
    assert '\nstill ran\n' in log and 'never ran' not in log and 'timed out after 2 s' in log
    args = gpu_check.parse_args(['--dry', '--commit', 'c0ffee'])
    table = gpu_check.summary(args, results, 12.0).splitlines()
    assert table[0].startswith('gpu_check: DRY run on the CPU, commit c0ffee, 12 s of 640 s')
    assert table[-1].startswith('train        ok') and table[-1].endswith('3 passed, 1 skipped in 0.12s')
    late = gpu_check.run_all(todo[2:], dict(os.environ), time.monotonic() + 10, tmp_path)
    assert late[0][1][0] == 'SKIPPED'  # under 20 s left of the time box


@pytest.mark.parametrize('dry', [False, True])
def test_every_command_of_a_run_parses(tmp_path, wheels, dry, monkeypatch):
    """What the GPU run (and the dry run) would execute: benchmark arguments, test paths and
    markers, inline Python, executables, checked without running them."""
    monkeypatch.setattr(gpu_check.os, 'cpu_count', lambda: 64)  # the GPU tests: 16 processes at most
    args = _args(tmp_path, wheels, *(['--dry'] if dry else []))
    stages = gpu_check.stages(args)
    assert tuple(stage.name for stage in stages) == gpu_check.STAGES
    for stage in stages:
        for argv in stage.commands:
            if argv[0] == 'env':  # env VAR=value command...
                argv = argv[next(i for i, a in enumerate(argv) if i and '=' not in a) :]
            assert argv[0] in (sys.executable, 'nvidia-smi', 'nvcc'), argv
            if 'tools/benchmark.py' in argv:
                parsed = bench.parse_args(argv[argv.index('tools/benchmark.py') + 1 :])
                assert parsed.device == ('cpu' if dry else 'cuda')
                assert Path(parsed.out).parent == tmp_path / 'out'
            elif argv[1:3] == ['-m', 'pytest']:
                paths = [a for a in argv if a.startswith('tests/')]
                assert paths and all((REPO / p).exists() for p in paths), argv
                if '-m' in argv[3:]:
                    assert argv[argv.index('-m', 3) + 1] in ('gpu', 'not gpu')
                workers = argv[argv.index('-n') + 1] if '-n' in argv else '1'
                assert workers == ('16' if stage.name in ('kernels', 'models') and 'gpu' in argv else '1')
            elif argv[1] == '-c':
                compile(argv[2], f'{stage.name} -c', 'exec')
            elif argv[0] == sys.executable and argv[1].endswith('.py'):
                assert (REPO / argv[1]).is_file()
    expected = {'bench_b1': 'bench_b1.json', 'bench_b8': 'bench_b8.json', 'detector': 'bench_detector.json'}
    expected['train_step'] = 'bench_train.json'
    assert {s.name: s.out.name for s in stages if s.out} == expected


@pytest.mark.slow
def test_dry_run(tmp_path, wheels):
    """The dry run's stages that CI does not run otherwise (the CPU twins of the kernels and the
    training are CI tests; the batch-1 and batch-8 benchmarks differ from the detector's only in
    their arguments, checked above)."""
    out = tmp_path / 'out'
    run = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'gpu_check.py'), '--dry', '--out', str(out), '--commit', 'c',
         '--wheels', str(wheels), '--skip', 'kernels', 'train', 'bench_b1', 'bench_b8', 'train_step'],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    table = (out / 'summary.txt').read_text()
    assert table in run.stdout
    rows = {line.split()[0]: line for line in table.splitlines()[2:8]}
    assert list(rows) == ['environment', 'deps', 'build', 'models', 'graphs', 'detector']
    assert all(line.split()[1] == 'ok' for line in rows.values()), table
    assert '7 wheels, one of each' in (out / 'setup.log').read_text()
    for stage in ('models', 'graphs'):  # the GPU tests were found, and skipped
        assert ' skipped' in rows[stage] and 'passed' not in rows[stage]
    assert rows['detector'].endswith('2 rows, 0 as CUDA graphs')
    assert 'sparse@71.4' in table.split('--- detector (bench_detector.json)')[1]
    assert sorted(p.name for p in out.iterdir()) == [
        'bench.log', 'bench_detector.json', 'setup.log', 'summary.txt', 'tests.log'
    ]  # fmt: skip
