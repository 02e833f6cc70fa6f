"""The eval-constant cache: recomputed exactly when a source tensor is replaced or changed."""

import torch

from mmdet.ops.cache import cached, no_grad_cached


class Owner:
    pass


def test_cached_follows_replacement_and_in_place_changes():
    owner, calls = Owner(), []
    weight = torch.ones(3)

    def make():
        calls.append(1)
        return weight * 2

    assert torch.equal(cached(owner, '_c', [weight], make), torch.full((3,), 2.0))
    cached(owner, '_c', [weight], make)
    assert len(calls) == 1  # unchanged: not recomputed
    weight.add_(1)  # in place: new version
    assert torch.equal(cached(owner, '_c', [weight], make), torch.full((3,), 4.0))
    weight = torch.zeros(3)  # replaced: new storage
    assert torch.equal(cached(owner, '_c', [weight], make), torch.zeros(3))
    assert len(calls) == 3


def test_cached_takes_inference_tensors():
    owner = Owner()
    with torch.inference_mode():
        stacked = torch.cat([torch.ones(2), torch.ones(1)])  # tracks no version counter
        assert torch.equal(cached(owner, '_c', [stacked], lambda: stacked + 1), torch.full((3,), 2.0))


def test_no_grad_cached_recomputes_with_autograd():
    owner, calls = Owner(), []
    weight = torch.ones(2, requires_grad=True)

    def make():
        calls.append(1)
        return weight * 3

    with torch.no_grad():
        no_grad_cached(owner, '_c', [weight], make)
        no_grad_cached(owner, '_c', [weight], make)
    assert len(calls) == 1
    out = no_grad_cached(owner, '_c', [weight], make)
    assert out.requires_grad and len(calls) == 2  # a fresh result that carries the gradient
