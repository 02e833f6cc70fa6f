"""tools/sweep.py: deriving the runs, the commands it issues, and collecting fabricated outputs."""

import csv
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmdet.core.evaluation import save_results

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / 'configs' / 'demo' / 'sparse_resnet_demo.py'


def _tool(name):
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sweep = _tool('sweep')


@pytest.fixture
def base_config(tmp_path):
    """The sparse demo config tested on a two-image COCO file in tmp_path (one class, one box each)."""
    ann = dict(
        images=[
            dict(id=1, file_name='a.jpg', width=64, height=48),
            dict(id=2, file_name='b.jpg', width=64, height=48),
        ],
        annotations=[
            dict(id=1, image_id=1, category_id=7, bbox=[10, 10, 20, 20], area=400, iscrowd=0),
            dict(id=2, image_id=2, category_id=7, bbox=[30, 5, 20, 30], area=600, iscrowd=0),
        ],
        categories=[dict(id=7, name='thing')],
    )
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    config = tmp_path / 'base.py'
    test = f"dict(type='CustomDataset', ann_file='{tmp_path / 'ann.json'}', img_prefix='{tmp_path}/')"
    config.write_text(f"_base_ = ['{DEMO}']\ndata = dict(test={test})\n")
    return str(config)


# v0.6 boxes: [x, y, w, h] -> [x, y, x + w - 1, y + h - 1]
HIT_1 = np.array([[10, 10, 29, 29, 0.9]], dtype=np.float32)
HIT_2 = np.array([[30, 5, 49, 34, 0.8]], dtype=np.float32)
NONE = np.zeros((0, 5), dtype=np.float32)


def _fabricate(run, results, densities, gflops, metrics=None):
    """What tools/test.py leaves: results.pkl, results_density.json and, given, results_metrics.json."""
    Path(run.work_dir).mkdir(parents=True, exist_ok=True)
    save_results(run.results, results, img_ids=[1, 2], classes=['thing'])  # base_config's test set
    Path(run.density_json).write_text(json.dumps(dict(densities=densities, gflops=gflops)))
    if metrics is not None:
        Path(run.metrics_json).write_text(json.dumps(metrics))


def test_derive_runs_names_work_dirs_and_configs(tmp_path):
    runs = sweep.derive_runs(
        str(DEMO), [0, 0.02, 0.05], str(tmp_path), ['total_epochs=1', 'optimizer.lr=0.01']
    )
    assert [Path(r.work_dir).name for r in runs] == [
        'sparse_loss_weight_0',
        'sparse_loss_weight_0_02',
        'sparse_loss_weight_0_05',
    ]
    for run, weight in zip(runs, [0.0, 0.02, 0.05]):
        cfg = run.config()
        assert cfg.model.backbone.sparse_loss_weight == weight
        assert cfg.total_epochs == 1 and cfg.optimizer.lr == 0.01


def test_commands_parse_as_the_tools_parse_them(tmp_path):
    run = sweep.derive_runs(str(DEMO), [0.05], str(tmp_path), ['total_epochs=1'])[0]
    train_args = _tool('train').parse_args(sweep.train_command(run, resume=True, extra=['--seed', '3'])[2:])
    assert train_args.config == str(DEMO) and train_args.work_dir == run.work_dir
    assert train_args.auto_resume and train_args.seed == 3
    assert train_args.cfg_options == {'total_epochs': 1, 'model.backbone.sparse_loss_weight': 0.05}
    test_args = _tool('test').parse_args(sweep.test_command(run)[2:])
    assert test_args.checkpoint == str(Path(run.work_dir) / 'latest.pth') and test_args.out == run.results
    assert test_args.cfg_options == {'total_epochs': 1, 'model.backbone.sparse_loss_weight': 0.05}
    assert test_args.eval == ['bbox']  # test.py evaluates (and writes results_metrics.json), not the sweep
    assert _tool('test').parse_args(sweep.test_command(run, extra=['--eval', 'proposal'])[2:]).eval == [
        'proposal'
    ]
    dist = sweep.train_command(run, gpus=8)
    assert dist[:4] == ['bash', str(REPO / 'tools' / 'dist_train.sh'), str(DEMO), '8']
    dist_test = sweep.test_command(run, gpus=8)
    assert dist_test[:3] == ['bash', str(REPO / 'tools' / 'dist_test.sh'), str(DEMO)]
    assert dist_test[dist_test.index('--eval') + 1] == 'bbox'  # dist_test.sh adds no second one


def test_bad_sweeps_are_refused(tmp_path):
    with pytest.raises(ValueError, match='must be >= 0'):
        sweep.derive_runs(str(DEMO), [0.1, -0.1], str(tmp_path))
    with pytest.raises(ValueError, match='repeated'):
        sweep.derive_runs(str(DEMO), [0.1, 0.1], str(tmp_path))
    with pytest.raises(ValueError, match='set by --weights'):
        sweep.derive_runs(str(DEMO), [0.1], str(tmp_path), ['model.backbone.sparse_loss_weight=1'])
    with pytest.raises(KeyError, match='sparse_loss_weight'):  # a dense ResNet has no such key
        sweep.derive_runs(str(REPO / 'configs' / 'demo' / 'resnet_demo.py'), [0.1], str(tmp_path))


def test_collect_evaluates_and_writes_the_tables(base_config, tmp_path):
    root = tmp_path / 'sweep'
    runs = sweep.derive_runs(base_config, [0, 0.02, 0.05], str(root))
    # w = 0: both boxes found, not evaluated yet; w = 0.02: one of two found, metrics already
    # written by tools/test.py (a made-up AP50 shows they are read, not recomputed); w = 0.05: no output
    _fabricate(runs[0], [[HIT_1], [HIT_2]], [[1.0, 0.8], [0.6, 0.4]], 12.5)
    _fabricate(
        runs[1],
        [[HIT_1], [NONE]],
        [[0.5, 0.25], [0.25, 0.5]],
        7.25,
        dict(bbox_mAP=0.505, bbox_mAP_50=0.6, bbox_mAP_75=0.505),
    )
    sweep.main([base_config, '--weights', '0', '0.02', '0.05', '--work-root', str(root), '--mode', 'collect'])

    metrics = json.loads(Path(runs[0].metrics_json).read_text())
    assert metrics['bbox_mAP'] == pytest.approx(1.0) and metrics['bbox_mAP_50'] == pytest.approx(1.0)
    with open(root / 'sweep.csv') as f:
        rows = list(csv.DictReader(f))
    assert [float(r['sparse_loss_weight']) for r in rows] == [0.0, 0.02]
    assert [float(r['bbox_mAP']) for r in rows] == pytest.approx([1.0, 0.505])
    assert [float(r['gflops']) for r in rows] == [12.5, 7.25]
    assert [float(r['mean_density_conv1']) for r in rows] == pytest.approx([0.8, 0.375])
    assert [float(r['mean_density_conv2']) for r in rows] == pytest.approx([0.6, 0.375])
    table = (root / 'sweep.md').read_text().splitlines()
    assert table[-2:] == [
        '| 0 | 100.0 | 100.0 | 100.0 | 12.5 | 0.800 | 0.600 |',
        '| 0.02 | 50.5 | 60.0 | 50.5 | 7.25 | 0.375 | 0.375 |',
    ]
    plot = cv2.imread(str(root / 'sweep.png'))
    assert plot is not None and plot.std() > 5


def test_half_the_boxes_give_the_coco_area_under_the_curve(base_config, tmp_path):
    """One hit of two: precision 1 up to recall 0.5, so 51 of COCO's 101 recall points."""
    run = sweep.derive_runs(base_config, [0.1], str(tmp_path))[0]
    _fabricate(run, [[HIT_1], [NONE]], [[1.0, 1.0]], 1.0)
    assert sweep.evaluate_run(run)['bbox_mAP'] == pytest.approx(51 / 101)


def test_run_and_resume_train_test_then_evaluate(base_config, tmp_path, monkeypatch):
    root = tmp_path / 'sweep'
    issued = []

    def fake_run(cmd, check, env):
        """Stands in for tools/train.py and tools/test.py: test leaves its outputs, metrics made up
        (both boxes are found: evaluating them again would give 1.0)."""
        issued.append(cmd)
        if Path(cmd[1]).name == 'test.py':
            run = next(r for r in sweep.derive_runs(base_config, [0.02, 0.1], str(root)) if r.results in cmd)
            metrics = dict(bbox_mAP=0.25, bbox_mAP_50=0.5, bbox_mAP_75=0.125)
            _fabricate(run, [[HIT_1], [HIT_2]], [[0.5, 0.5]], 3.0, metrics)

    monkeypatch.setattr(sweep.subprocess, 'run', fake_run)
    argv = [base_config, '--weights', '0.02', '0.1', '--work-root', str(root), '--train-args=--seed 1']
    sweep.main([*argv, '--mode', 'run'])
    assert [Path(c[1]).name for c in issued] == ['train.py', 'test.py', 'train.py', 'test.py']
    assert '--auto-resume' not in issued[0] and issued[0][-4:] == [
        '--seed',
        '1',
        '--cfg-options',
        'model.backbone.sparse_loss_weight=0.02',
    ]
    assert all(cmd[cmd.index('--eval') + 1] == 'bbox' for cmd in issued[1::2])
    with open(root / 'sweep.csv') as f:  # test.py's metrics, not evaluated a second time
        assert [float(r['bbox_mAP']) for r in csv.DictReader(f)] == [0.25, 0.25]
    assert len((root / 'sweep.md').read_text().splitlines()) == 6  # title, blank, header, rule, 2 rows

    issued.clear()
    for run_dir in root.glob('sparse_loss_weight_*'):
        for f in run_dir.iterdir():
            f.unlink()
        run_dir.rmdir()
    sweep.main([*argv, '--mode', 'resume'])
    assert '--auto-resume' in issued[0] and '--auto-resume' in issued[2]
