"""tools/quickstart_summary.py on hand-made quick-start outputs, and the quick start's checkpoint."""

import hashlib
import json
import re
from pathlib import Path

import pytest
from tool_helpers import load_tool

from mmdet.utils import load_config
from mmdet.utils.flops import backbone_gflops_from_cfg

quickstart_summary = load_tool('quickstart_summary')
ROOT = Path(__file__).parents[2]
DENSE_CONFIG = ROOT / 'configs/demo/resnet50_demo.py'


def bench(path, dense_ms, sparse_ms, hw):
    rows = [dict(variant='dense', median_ms=dense_ms), dict(variant='sparse@ckpt', median_ms=sparse_ms)]
    path.write_text(json.dumps(dict(meta=dict(input_hw=hw), rows=rows)))


@pytest.fixture
def work_dir(tmp_path):
    (tmp_path / 'dense_test.log').write_text('loading\nbbox_mAP: 0.61\nbbox_mAP_50: 0.9\n')
    (tmp_path / 'sparse_test.log').write_text('bbox_mAP_50: 0.88\nbbox_mAP: 0.595\n')
    (tmp_path / 'sparse_results_density.json').write_text(
        json.dumps(dict(gflops=0.02, densities=[[0.3, 0.2]]))
    )
    (tmp_path / 'mask_stats.json').write_text(json.dumps(dict(object=0.3, background=0.1)))
    bench(tmp_path / 'bench_demo.json', 12.0, 8.0, [160, 256])
    bench(tmp_path / 'bench_r101.json', 1000.0, 400.0, [480, 832])
    return tmp_path


def test_summary_numbers_and_lines(work_dir, capsys):
    s = quickstart_summary.main(
        [str(work_dir), '--dense-config', str(DENSE_CONFIG), '--out', str(work_dir / 's.json')]
    )
    cfg = load_config(str(DENSE_CONFIG))
    dense_gflops = backbone_gflops_from_cfg(cfg.model.backbone, 160)
    assert s['dense_map'] == 0.61 and s['sparse_map'] == 0.595
    assert s['dense_gflops'] == pytest.approx(dense_gflops) and s['sparse_gflops'] == 0.02
    assert s['bench_r101'] == dict(
        dense_ms=1000.0, sparse_ms=400.0, variant='sparse@ckpt', input_hw=[480, 832]
    )
    assert json.loads((work_dir / 's.json').read_text()) == s
    out = capsys.readouterr().out
    assert 'dense 61.0   sparse 59.5   (sparse - dense: -1.5 points)' in out
    assert f'({round(100 * 0.02 / dense_gflops)} % of dense)' in out
    assert '3.0x on the objects' in out
    assert 'at 480x832: dense 1000.0 ms, sparse@ckpt 400.0 ms (2.50x)' in out
    assert 'at 160x256: dense 12.0 ms, sparse@ckpt 8.0 ms (1.50x)' in out


def test_missing_metric_and_bad_benchmark_are_named(work_dir):
    (work_dir / 'sparse_test.log').write_text('bbox_mAP_50: 0.88\n')
    with pytest.raises(ValueError, match=r'sparse_test.log: no "bbox_mAP: <value>" line'):
        quickstart_summary.main([str(work_dir), '--dense-config', str(DENSE_CONFIG)])
    (work_dir / 'sparse_test.log').write_text('bbox_mAP: 0.5\n')
    (work_dir / 'bench_demo.json').write_text(
        json.dumps(dict(meta={}, rows=[dict(variant='dense', median_ms=1)]))
    )
    with pytest.raises(ValueError, match=r'bench_demo.json: expected the rows dense and one sparse@'):
        quickstart_summary.main([str(work_dir), '--dense-config', str(DENSE_CONFIG)])
    (work_dir / 'mask_stats.json').write_text(json.dumps(dict(object=0.3)))
    with pytest.raises(KeyError, match=r"mask_stats.json: missing \['background'\]"):
        quickstart_summary.main([str(work_dir), '--dense-config', str(DENSE_CONFIG)])


def test_checkpoint_matches_the_sha256_of_the_quick_start_and_its_readme():
    script = (ROOT / 'tools/quickstart.sh').read_text()
    path = re.search(r'^CHECKPOINT=(\S+)$', script, re.M).group(1)
    sha = re.search(r'^CHECKPOINT_SHA256=(\S+)$', script, re.M).group(1)
    data = (ROOT / path).read_bytes()
    assert len(data) <= 10 * 2**20
    assert hashlib.sha256(data).hexdigest() == sha
    assert sha in (ROOT / 'configs/demo/README.md').read_text()
    assert load_config(str(ROOT / 'configs/demo/sparse_resnet50_demo.py')).load_from == path
