"""tools/benchmark.py --compile and the operator counts of its rows (no timing is asserted)."""

import pytest
import torch
from tool_helpers import REPO, load_tool

from mmdet.apis.benchmark import count_dispatched
from mmdet.ops import sparse

bench = load_tool('benchmark')
CONFIG = REPO / 'configs' / 'sparse_resnet_101_faster_rcnn_sparse_loss_weight_0_2.py'
CPU = torch.device('cpu')


def test_count_dispatched_counts_what_python_or_a_graph_calls():
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    assert count_dispatched(lambda: torch.add(a, b).mul(2), CPU) == 2
    mask = (torch.rand(1, 1, 5, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    # one op, whatever it calls inside (its kernel's own ATen calls)
    assert count_dispatched(lambda: sparse.active_positions(mask), CPU) == 1
    compiled = torch.compile(lambda x, y: torch.add(x, y).mul(2).relu(), backend='eager', fullgraph=True)
    compiled(a, b)
    assert count_dispatched(lambda: compiled(a, b), CPU) == 3  # the graph's three, not its wrappers


@pytest.mark.slow
def test_compiled_rows_beside_the_eager_ones(tmp_path):
    config = tmp_path / 'tiny.py'
    config.write_text(f'_base_ = [{str(CONFIG)!r}]\nmodel = dict(backbone=dict(depth=50, base_channels=8))\n')
    rows = bench.main(
        [str(config), '--device', 'cpu', '--resolution', '64', '--variants', 'dense', 'sparse',
         '--target-gflops', 'full', '--repeats', '1', '--warmup', '0', '--compile', 'eager']
    )  # fmt: skip
    assert [r['variant'] for r in rows] == ['dense', 'dense+eager', 'sparse@full', 'sparse@full+eager']
    for eager, compiled in (rows[:2], rows[2:]):
        assert eager['vs_eager'] is None
        assert compiled['vs_eager'] == pytest.approx(eager['median_ms'] / compiled['median_ms'])
        assert compiled['gflops'] == eager['gflops'] and compiled['density'] == eager['density']
        assert compiled['graph'] is False
        for row in (eager, compiled):
            assert row['ops'] > 16 and row['ops_per_block'] == row['ops'] / 16  # 16 blocks in a ResNet-50
    dense, sparse_row = rows[0], rows[2]
    assert sparse_row['ops'] > dense['ops']  # masks, sampling, interpolations
