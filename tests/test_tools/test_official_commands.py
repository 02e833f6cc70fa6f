"""The official code's command-line options on tools/train.py and tools/test.py (in-process)."""

import json
import re

import pytest
import torch
from tool_helpers import TOY_CONFIG, load_tool, tiny_sparse_detector_config

from mmdet.datasets.demo import make_demo_data
from mmdet.models import build_detector
from mmdet.utils import backbone_gflops, load_config

# what a script parsing the official test logs would match
BLOCK_LINE = re.compile(
    r'^\[layer(\d)\] \[ block(\d+)\] \[Img (\d+)\] \[Conv1 (\d\.\d{4})\] \[Conv2 (\d\.\d{4})\]$', re.M
)
FLOPS_LINE = re.compile(r'^Flops : ([\d.]+) GFlops$', re.M)


def test_train_takes_the_official_options_and_warns_about_unknown_ones(tmp_path):
    work = tmp_path / 'work'
    train = load_tool('train')
    train.main(
        [str(TOY_CONFIG), '--work_dir', str(work), '--gpus', '1', '--local_rank', '0', '--device', 'cpu',
         '--autoscale-lr', '--valdiate', '--cfg-options', 'total_epochs=1']
    )  # fmt: skip
    (log,) = work.glob('*.log')
    assert (
        'WARNING - ignoring arguments tools/train.py does not know: --autoscale-lr --valdiate; '
        '--valdiate (did you mean --validate?)' in log.read_text()
    )
    assert 'Epoch(1) val' not in log.read_text()  # the misspelt --validate did nothing
    resumed = tmp_path / 'resumed'
    train.main(
        [str(TOY_CONFIG), '--work_dir', str(resumed), '--resume_from', str(work / 'epoch_1.pth'),
         '--device', 'cpu', '--cfg-options', 'total_epochs=2']
    )  # fmt: skip
    (log,) = resumed.glob('*.log')
    assert f'resumed from {work / "epoch_1.pth"} at epoch 1' in log.read_text()
    assert sorted(p.name for p in resumed.glob('*.pth')) == ['epoch_2.pth', 'latest.pth']


def test_train_gpus_beyond_one_process(tmp_path, capsys, monkeypatch):
    train = load_tool('train')
    with pytest.raises(SystemExit) as exit_info:
        train.main([str(TOY_CONFIG), '--gpus', '4'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert '--gpus 4: tools/train.py runs one process' in err
    assert f'run tools/dist_train.sh {TOY_CONFIG} 4 [options]' in err
    with pytest.raises(SystemExit):
        train.main([str(TOY_CONFIG), '--gpus', '0'])
    assert 'expected a positive integer, got 0' in capsys.readouterr().err
    work = str(tmp_path / 'work')
    with pytest.raises(ValueError, match='--launcher mpi is not supported'):
        train.main([str(TOY_CONFIG), '--work-dir', work, '--launcher', 'mpi', '--device', 'cpu'])
    for key in ('SLURM_PROCID', 'SLURM_LOCALID', 'SLURM_NTASKS'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match='SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS not set'):
        train.main(
            [str(TOY_CONFIG), '--work-dir', work, '--launcher', 'slurm', '--gpus', '8', '--device', 'cpu']
        )
    assert not list(tmp_path.iterdir())  # failed before writing anything


@pytest.mark.parametrize('metrics', [['segm'], ['bbox', 'proposal_fast', 'keypoints']])
def test_test_refuses_other_metrics_before_anything_else(tmp_path, capsys, metrics):
    missing = str(tmp_path / 'missing.py')  # neither the config nor the checkpoint is read
    with pytest.raises(SystemExit) as exit_info:
        load_tool('test').main([missing, missing, '--eval', *metrics])
    assert exit_info.value.code == 2
    unsupported = ' '.join(m for m in metrics if m != 'bbox')
    assert f'--eval {unsupported}: not supported by this detector' in capsys.readouterr().err


def test_test_prints_the_official_density_lines(tmp_path, capsys):
    root = make_demo_data(str(tmp_path / 'demo'), seed=0, num_train=1, num_val=3)
    config = tmp_path / 'tiny.py'
    config.write_text(
        tiny_sparse_detector_config(
            data=f", ann_file='{root}/annotations/val.json', img_prefix='{root}/val/'"
        )
    )
    cfg = load_config(str(config))
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=build_detector(cfg.model, test_cfg=cfg.test_cfg).state_dict()), checkpoint)
    out = tmp_path / 'results.pkl'
    load_tool('test').main(
        [str(config), str(checkpoint), '--out', str(out), '--eval', 'bbox', 'proposal', '--device', 'cpu',
         '--tmpdir', str(tmp_path / 'unused')]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert 'bbox_mAP: ' in printed and 'AR@100: ' in printed
    report = json.loads((tmp_path / 'results_density.json').read_text())
    blocks = BLOCK_LINE.findall(printed)
    assert [(int(s), int(b)) for s, b, *_ in blocks] == [
        (stage, block) for stage, count in ((1, 3), (2, 4), (3, 6), (4, 3)) for block in range(count)
    ]  # SparseResNet-50
    assert {n for _, _, n, _, _ in blocks} == {'3'} and report['num_images'] == 3
    assert [[float(d1), float(d2)] for *_, d1, d2 in blocks] == [
        [round(d1, 4), round(d2, 4)] for d1, d2 in report['densities']
    ]
    assert '\nBaseline : SparseResNet50\nResolution: 1000\n' in printed
    expected = backbone_gflops(
        50, 1000, report['densities'], dcn_stages=(False,) * 4, sparse=True, base_channels=4
    )
    assert float(FLOPS_LINE.search(printed).group(1)) == pytest.approx(expected, rel=1e-3)
    assert 'backbone GFLOPs: ' in printed  # our own table too
    assert not (tmp_path / 'unused').exists()  # one process: nothing to gather through files
