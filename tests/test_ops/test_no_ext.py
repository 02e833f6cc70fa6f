"""Without the compiled extension the package still imports and runs on its reference paths."""

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
from mmdet.models import build_backbone
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    assert not ops.has_ops()
assert any('pure-PyTorch reference ops' in str(w.message) for w in caught)
print(ops.backend_summary())
model = build_backbone(dict(type='SparseResNet', depth=50, base_channels=4, sparse_loss_weight=0.1)).eval()
assert model.execution == 'dense'
outs = model(torch.randn(1, 3, 32, 32))
assert [o.shape[1] for o in outs] == [16, 32, 64, 128]
"""


def test_import_and_forward_without_the_extension():
    proc = subprocess.run(
        [sys.executable, '-c', SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert 'pure-PyTorch reference ops (compiled extension not built)' in proc.stdout
