"""mmdet.utils.timing: the timed call, glibc malloc tuning and the CUDA-graph replay."""

import gc
import platform
import time
import weakref

import pytest
import torch

from mmdet.utils.timing import graphed, keep_freed_memory, time_once


def test_time_once_measures_the_call():
    calls = []
    seconds = time_once(lambda: (calls.append(1), time.sleep(0.02)), torch.device('cpu'))
    assert calls == [1] and 0.02 <= seconds < 5


def test_keep_freed_memory_on_glibc_only():
    assert keep_freed_memory() is (platform.libc_ver()[0] == 'glibc')


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_graphed_replay_keeps_model_and_input_alive():
    # a graph replays raw addresses: if the model were freed after capture, a later variant
    # could reuse its memory and the replay would write into it (an illegal access, once seen)
    model = torch.nn.Conv2d(3, 4, 3).cuda().eval()
    alive = weakref.ref(model)
    with torch.no_grad():
        replay = graphed(model, torch.randn(1, 3, 8, 8, device='cuda'))
    del model
    gc.collect()
    assert alive() is not None
    replay()
    torch.cuda.synchronize()
