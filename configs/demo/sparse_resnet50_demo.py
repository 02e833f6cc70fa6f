# The quick start's model: configs/demo/resnet50_demo.py with SparseResNet-50 blocks (Bottlenecks,
# so exact sparse execution runs at test time), fine-tuned sparsely from the dense demo checkpoint
# (configs/demo/README.md: how it was made, its sha256). Training runs the masks dense-masked (the
# exact sparse path is for inference); tools/test.py --cfg-options model.backbone.execution=sparse
# evaluates it with the exact sparse kernels.
_base_ = ['./resnet50_demo.py']
FINE_TUNE_EPOCHS = 4
FINE_TUNE_ITERS = FINE_TUNE_EPOCHS * 73  # 300 training images, 4 per batch (73 batches by orientation)
model = dict(
    backbone=dict(
        type='SparseResNet',
        sparse_loss_weight=0.4,  # the pilot runs of docs/results.md (quick start section)
        sampling='stochastic',
        grid_prior_interval=4,
        execution='dense',
        # T = decay_alpha ** iterations ends at the paper's final 0.16 after the fine-tune
        decay_alpha=0.16 ** (1 / FINE_TUNE_ITERS),
    )
)
load_from = 'configs/demo/resnet50_demo_dense.pth'
# the mask predictors are new (they start at p = 0.95 everywhere): at 20x the lr (0.2) they learn
# within the short fine-tune, while the detector, already trained, gets half the dense lr
# (docs/results.md: the pilot runs)
optimizer = dict(lr=0.01, paramwise_cfg=dict(custom_keys={'_mask': dict(lr_mult=20.0)}))
lr_config = dict(warmup_iters=20, step=[3])
total_epochs = FINE_TUNE_EPOCHS
checkpoint_config = dict(interval=1)
