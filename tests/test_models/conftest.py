"""Fixtures of the model tests: one compute thread per module that asks for it, and float32
without TF32 on CUDA."""

import pytest
import torch


@pytest.fixture(scope='module')
def single_thread():
    # two oversubscribed threads on a shared CPU are ~8x slower than one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_tf32():
    # cuDNN runs float32 convs in TF32 by default: the dense reference would be ~1e-3 off the
    # sparse kernels' float32, enough to flip a Gumbel sample near 0.5 in a later block
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
