# The demo model with a SparseResNet-18-like backbone (BasicBlocks: one mask pair per block, see
# SparseResNet). The 5 x 8 stride-32 maps of the 160 x 256 demo images need a denser grid prior.
# Exact sparse execution exists for Bottlenecks only, so this model runs dense-masked.
_base_ = ['./resnet_demo.py']
model = dict(
    backbone=dict(
        type='SparseResNet',
        sparse_loss_weight=0.3,  # the higher weight of the end-to-end proof (docs/results.md)
        sampling='stochastic',
        grid_prior_interval=4,
        execution='dense',
        # The Gumbel temperature is multiplied by decay_alpha after every training iteration. The
        # paper's 0.99998 over its ~90k iterations ends at T = 0.99998 ** 90000 = 0.165; over the
        # 876 iterations of this schedule (12 x 73) it would stay at 0.98 while evaluation samples
        # at T = 0.03; 0.99792 ends it at 0.99792 ** 876 = 0.16, the paper's final T, instead.
        decay_alpha=0.99792,
    )
)
