"""Eval-time constants derived from parameters, cached while the parameters stay unchanged."""

import torch


def cached(owner, name: str, tensors, make):
    """``make()``, cached on ``owner`` as attribute ``name`` and made anew only when one of
    ``tensors`` was replaced (``data_ptr``) or changed in place (``_version``).

    For what a backbone derives from its weights in every eval forward (folded BatchNorm,
    relaid or stacked weights): computing it each time would launch kernels for nothing. Under
    torch.compile and torch.export, ``make()`` is traced instead: the graph computes it (Inductor
    fuses it or, with frozen weights, folds it once), and a traced tensor has no storage to key on.
    """
    if torch.compiler.is_compiling():
        return make()
    # tensors made under torch.inference_mode track no version: their storage alone is the key
    key = tuple((t.data_ptr(), None if t.is_inference() else t._version) for t in tensors)
    hit = getattr(owner, name, None)
    if hit is None or hit[0] != key:
        hit = key, make()
        setattr(owner, name, hit)
    return hit[1]


def no_grad_cached(owner, name: str, tensors, make):
    """``cached(...)`` where autograd is off; with autograd on, ``make()`` each time (its result
    must then carry the gradient to ``tensors``)."""
    if torch.is_grad_enabled():
        return make()
    return cached(owner, name, tensors, make)
