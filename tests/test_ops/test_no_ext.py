"""Without the compiled extension the package still imports and its ops run on the references."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
sys.modules['mmdet._ext'] = None  # makes `import mmdet._ext` raise ImportError, as when it is not built
import warnings
import torch
import mmdet, mmdet.models, mmdet.ops as ops
from mmdet.ops import library, sparse
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    assert not ops.has_ops()
assert any('pure-PyTorch reference ops' in str(w.message) for w in caught)
assert {library.backend(op, 'cpu') for op in library.SCHEMAS} == {'reference'}
print(ops.backend_summary())
mask = torch.zeros(1, 1, 4, 5)
mask[0, 0, 1, 2] = mask[0, 0, 3, 0] = 1.0
indices, count = sparse.active_positions(mask)
x = torch.arange(20.0).view(1, 1, 4, 5)
rows = sparse.sparse_conv(x, torch.ones(2, 1, 1, 1), indices, count)
assert indices.tolist() == [7, 15] and rows.tolist() == [[7.0, 7.0], [15.0, 15.0]]
out = sparse.sparse_interpolate(rows, indices, count, mask, 1.0)
assert out[0, :, 1, 2].tolist() == [7.0, 7.0] and out[0, :, 3, 0].tolist() == [15.0, 15.0]
"""


def test_import_and_ops_without_the_extension():
    proc = subprocess.run(
        [sys.executable, '-c', SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert 'compiled extension not built | cpu: reference (active_positions' in proc.stdout
