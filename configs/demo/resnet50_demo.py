# The dense twin of the quick start's model: a thin ResNet-50 (Bottleneck blocks, base width 8:
# stages of 32, 64, 128 and 256 channels) Faster R-CNN for the synthetic demo set, with the 3 x 3
# stem of the demo configs. The quick start does not train it: it starts from the small checkpoint
# that this config trained (configs/demo/README.md says how it was made, with its sha256): 30 epochs
# of 73 iterations, lr x 0.1 after epochs 20 and 27 (about 20 minutes on 2 CPU cores).
_base_ = ['./resnet_demo.py']
model = dict(backbone=dict(depth=50, base_channels=8))
lr_config = dict(step=[20, 27])
total_epochs = 30
checkpoint_config = dict(interval=10)
