from .bbox_head import SharedFCBBoxHead
from .single_level_roi_extractor import SingleRoIExtractor

__all__ = ['SharedFCBBoxHead', 'SingleRoIExtractor']
