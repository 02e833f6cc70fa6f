"""SAI-Det: Spatially Adaptive Inference (Xie et al., ECCV 2020) for COCO object detection.

Importing ``mmdet`` never loads compiled code: the ops in ``mmdet.ops`` load the extension
lazily and fall back to pure-PyTorch references when it is missing.
"""

__version__ = '0.1.0'
