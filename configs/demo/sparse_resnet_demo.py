# The demo model with a SparseResNet-18-like backbone (BasicBlocks: one mask pair per block, see
# SparseResNet). The 5 x 8 stride-32 maps of the 160 x 256 demo images need a denser grid prior.
# Exact sparse execution exists for Bottlenecks only, so this model runs dense-masked.
_base_ = ['./resnet_demo.py']
model = dict(
    backbone=dict(
        type='SparseResNet',
        sparse_loss_weight=0.2,
        sampling='stochastic',
        grid_prior_interval=4,
        execution='dense',
    )
)
