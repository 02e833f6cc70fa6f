"""Element-wise weighting and reduction shared by the losses."""


def weight_reduce_loss(loss, weight=None, reduction='mean', avg_factor=None):
    """Weight an element-wise ``loss`` and reduce it.

    With ``avg_factor`` a 'mean' is sum / avg_factor; 'sum' and 'none' ignore it.
    """
    if reduction not in ('none', 'mean', 'sum'):
        raise ValueError(f'reduction must be "none", "mean" or "sum", got {reduction!r}')
    if weight is not None:
        loss = loss * weight
    if reduction == 'none':
        return loss
    if reduction == 'sum':
        return loss.sum()
    if avg_factor is None:
        return loss.mean() if loss.numel() else loss.sum()
    return loss.sum() / avg_factor
