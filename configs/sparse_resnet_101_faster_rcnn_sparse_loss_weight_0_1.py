# Faster R-CNN + FPN, SparseResNet-101-DCN, sparse loss weight 0.1, images resized to (1667, 1000)
# (paper: r = 1000, 41.9 mAP, 94.4 backbone GFLOPs). The dense res1000 model with a sparse backbone.
_base_ = './resnet_101_faster_rcnn_res1000.py'
model = dict(
    backbone=dict(type='SparseResNet', sparse_loss_weight=0.1, sampling='stochastic', grid_prior_interval=11)
)
