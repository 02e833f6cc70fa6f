from .bbox_nms import multiclass_nms, nms_plus_one

__all__ = ['multiclass_nms', 'nms_plus_one']
