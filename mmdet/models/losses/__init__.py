from .cross_entropy_loss import CrossEntropyLoss, accuracy
from .smooth_l1_loss import SmoothL1Loss

__all__ = ['CrossEntropyLoss', 'SmoothL1Loss', 'accuracy']
