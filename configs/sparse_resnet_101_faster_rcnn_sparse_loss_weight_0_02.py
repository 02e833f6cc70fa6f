# Faster R-CNN + FPN, SparseResNet-101-DCN, sparse loss weight 0.02, images resized to (1667, 1000)
# (paper: r = 1000, 43.3 mAP, 164.8 backbone GFLOPs). The dense res1000 model with a sparse backbone.
_base_ = './resnet_101_faster_rcnn_res1000.py'
model = dict(
    backbone=dict(type='SparseResNet', sparse_loss_weight=0.02, sampling='stochastic', grid_prior_interval=11)
)
