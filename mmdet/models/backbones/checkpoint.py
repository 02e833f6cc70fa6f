"""Gradient checkpointing of one residual block (the ``with_cp`` option of ResNet / SparseResNet).

The block's activations are not kept for backward but recomputed there (torch.utils.checkpoint,
non-reentrant), so the recomputation must see the state the forward saw and leave no trace:
- the global RNGs (CPU and the inputs' device) are replayed by torch.utils.checkpoint;
- every ``torch.Generator`` among the arguments (SparseResNet's private sampling generator) is
  replayed here, so the Gumbel noise is drawn again exactly;
- the block's buffers (the Gumbel temperature ``cur_T``, which decays after every training
  forward, and BatchNorm's running statistics in training mode) are set back to their values
  before the forward for the recomputation, and to their current values after it, so the
  temperature decays and the statistics move once per forward, as without checkpointing.
"""

import contextlib

import torch
from torch.utils.checkpoint import checkpoint


@contextlib.contextmanager
def _replayed_state(buffers, saved_buffers, generators, saved_generators):
    """Set ``buffers`` and ``generators`` to the saved states for the body, then back to the states now."""
    with torch.no_grad():
        current_buffers = [b.clone() for b in buffers]
        for buffer, value in zip(buffers, saved_buffers):
            buffer.copy_(value)
    current_generators = [g.get_state() for g in generators]
    for generator, state in zip(generators, saved_generators):
        generator.set_state(state)
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, current_buffers):
                buffer.copy_(value)
        for generator, state in zip(generators, current_generators):
            generator.set_state(state)


def checkpoint_block(block, fn, *args):
    """``fn(*args)`` (the forward of ``block``, an nn.Module), its activations recomputed in backward.

    Returns what ``fn`` returns; the gradients are those of running ``fn`` without checkpointing.
    """
    buffers = list(block.buffers())
    saved_buffers = [b.clone() for b in buffers]
    generators = [a for a in args if isinstance(a, torch.Generator)]
    saved_generators = [g.get_state() for g in generators]

    def contexts():
        replay = _replayed_state(buffers, saved_buffers, generators, saved_generators)
        return contextlib.nullcontext(), replay

    return checkpoint(fn, *args, use_reentrant=False, context_fn=contexts)
