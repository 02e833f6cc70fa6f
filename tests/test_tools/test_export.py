"""tools/export.py: torch.export of a sparse backbone, saved, loaded and run against eager."""

import pytest
import torch
from tool_helpers import REPO, load_tool, tiny_sparse_detector_config

from mmdet.apis.compile import export_backbone
from mmdet.models import build_detector
from mmdet.utils import load_config

export = load_tool('export')
DEMO_CONFIG = REPO / 'configs' / 'demo' / 'sparse_resnet_demo.py'


def save_checkpoint(config, path, mask_bias=None):
    """A random detector of ``config`` saved to ``path``; ``mask_bias``: per block index, the bias
    of both mask convs (None: as initialised). Returns the model."""
    cfg = load_config(str(config))
    torch.manual_seed(0)
    model = build_detector(cfg.model, train_cfg=None, test_cfg=cfg.test_cfg)
    if mask_bias is not None:
        with torch.no_grad():
            for i, block in enumerate(model.backbone.sparse_blocks()):
                for conv in (block.conv1_mask, block.conv2_mask):
                    conv.weight.normal_(0, 0.3)
                    conv.bias.fill_(mask_bias(i))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model


@pytest.fixture(scope='module')
def sparse_dcn(tmp_path_factory):
    """(config, checkpoint, eager model): the tiny SparseResNet-50 detector with DCN in stages 3 and
    4, blocks alternating dense (p = 0.98) and sparse (p = 0.18) sampling."""
    root = tmp_path_factory.mktemp('export')
    tiny = root / 'tiny.py'
    tiny.write_text(tiny_sparse_detector_config())
    config = root / 'tiny_dcn.py'
    config.write_text(
        f"_base_ = ['{tiny}']\n"
        "model = dict(backbone=dict(dcn=dict(_delete_=True, type='DCN'),\n"
        '                           stage_with_dcn=(False, False, True, True)))\n'
    )
    checkpoint = root / 'tiny_dcn.pth'
    model = save_checkpoint(config, checkpoint, lambda i: 4.0 if i % 2 else -1.5)
    return config, checkpoint, model


@pytest.mark.slow
def test_exported_sparse_backbone_runs_as_eager_after_a_save_and_load(sparse_dcn, tmp_path, capsys):
    config, checkpoint, model = sparse_dcn
    out = tmp_path / 'backbone.pt2'
    export.main([str(config), str(checkpoint), '--out', str(out), '--shape', '192', '256'])
    assert f'exported the SparseResNet (sparse) backbone of {config} to {out}' in capsys.readouterr().out
    program = torch.export.load(str(out))
    targets = {str(node.target) for node in program.graph.nodes}
    assert {
        'sai.active_positions.default',
        'sai.sparse_conv.default',
        'sai.sparse_deform_conv.default',
    } <= targets
    assert 'cond' in targets  # the dense fallbacks' choice, made at run time
    backbone = model.backbone.eval()
    backbone.execution = 'sparse'
    # the example size and another one: both with H * W between 40960 and 81920, where this model's
    # convolutions take the example's path (the program checks it, as the tool says)
    for height, width in ((192, 256), (160, 288)):
        img = torch.randn(1, 3, height, width)
        torch.manual_seed(3)  # the program samples from the global RNG, as the eager backbone without a seed
        with torch.no_grad():
            expected = backbone(img)
        torch.manual_seed(3)
        outs = program.module()(img)
        assert len(outs) == len(expected) == 4
        for out, ref in zip(outs, expected, strict=True):
            torch.testing.assert_close(out, ref, rtol=0, atol=1e-5 * ref.abs().max().item())


def test_what_cannot_be_exported_is_refused_in_one_line(sparse_dcn, tmp_path):
    config, checkpoint, _ = sparse_dcn
    with pytest.raises(SystemExit):  # argparse: usage and the reason
        export.main([str(config), str(checkpoint), '--out', str(tmp_path / 'backbone.pth')])
    with pytest.raises(SystemExit):
        export.main([str(config), str(checkpoint), '--out', str(tmp_path / 'b.pt2'), '--shape', '32', '64'])
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        export.main([str(config), str(tmp_path / 'missing.pth'), '--out', str(tmp_path / 'b.pt2')])
    basic = tmp_path / 'basic.pth'
    save_checkpoint(DEMO_CONFIG, basic)
    with pytest.raises(
        ValueError, match="--execution sparse: SparseResNet: execution='sparse' needs Bottleneck"
    ):
        export.main([str(DEMO_CONFIG), str(basic), '--out', str(tmp_path / 'b.pt2')])
    assert not (tmp_path / 'b.pt2').exists()


class HostRoundTrip(torch.nn.Module):
    """A backbone that takes its values to Python: torch.export cannot trace it."""

    def forward(self, img):
        return (torch.tensor(img.tolist()),)


def test_export_backbone_says_why_it_cannot_export():
    where = r'File ".*test_export.py", line \d+, in forward'
    with pytest.raises(
        ValueError, match=rf'HostRoundTrip cannot be exported by torch.export: .*tolist.* \({where}\)'
    ):
        export_backbone(HostRoundTrip().eval(), torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match='put the backbone in eval mode'):
        export_backbone(HostRoundTrip(), torch.zeros(1, 3, 64, 64))
