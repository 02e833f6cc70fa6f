from .block_masks import BlockMasks  # noqa: F401
from .gumbel import GumbelSigmoid  # noqa: F401
from .mask_density import MaskDensity  # noqa: F401
from .resnet import BasicBlock, Bottleneck, ResNet  # noqa: F401
from .sparse_resnet import SparseBasicBlock, SparseBottleneck, SparseResNet  # noqa: F401
