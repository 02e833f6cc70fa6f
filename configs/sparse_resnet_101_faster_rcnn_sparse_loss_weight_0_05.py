# Faster R-CNN + FPN, SparseResNet-101-DCN, sparse loss weight 0.05, images resized to (1667, 1000)
# (paper: r = 1000, 42.7 mAP, 120.3 backbone GFLOPs). The dense res1000 model with a sparse backbone.
_base_ = './resnet_101_faster_rcnn_res1000.py'
model = dict(
    backbone=dict(type='SparseResNet', sparse_loss_weight=0.05, sampling='stochastic', grid_prior_interval=11)
)
