from types import SimpleNamespace

import numpy as np
import pytest

from mmdet.datasets import DistributedGroupSampler, GroupSampler


def _dataset(flags):
    return SimpleNamespace(flag=np.array(flags, dtype=np.uint8))


def _batches(indices, size):
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def test_group_sampler_batches_stay_in_one_group():
    flags = [0] * 5 + [1] * 8
    ds = _dataset(flags)
    sampler = GroupSampler(ds, samples_per_gpu=2, seed=3)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 6 + 8  # group 0 topped up from 5 to 6
    assert set(indices) == set(range(13))
    for batch in _batches(indices, 2):
        assert len({flags[i] for i in batch}) == 1
    assert list(GroupSampler(ds, 2, seed=3)) == indices  # seeded
    sampler.set_epoch(1)
    assert list(sampler) != indices


def test_distributed_group_sampler_partitions_the_data():
    flags = [0] * 8 + [1] * 4
    ds = _dataset(flags)
    parts = [list(DistributedGroupSampler(ds, 2, num_replicas=2, rank=r, seed=5)) for r in range(2)]
    assert [len(p) for p in parts] == [6, 6]
    assert set(parts[0]).isdisjoint(parts[1])  # no padding needed: no overlap, all covered
    assert sorted(parts[0] + parts[1]) == list(range(12))
    for part in parts:
        for batch in _batches(part, 2):
            assert len({flags[i] for i in batch}) == 1


def test_distributed_group_sampler_pads_and_reshuffles():
    flags = [0] * 5 + [1] * 3
    ds = _dataset(flags)
    samplers = [DistributedGroupSampler(ds, 2, num_replicas=2, rank=r) for r in range(2)]
    parts = [list(s) for s in samplers]
    # each group topped up to a multiple of 2 * 2: 8 + 4 indices, 6 per rank
    assert [len(p) for p in parts] == [6, 6] and set(parts[0] + parts[1]) == set(range(8))
    for part in parts:
        for batch in _batches(part, 2):
            assert len({flags[i] for i in batch}) == 1
    for s in samplers:
        s.set_epoch(1)
    assert [list(s) for s in samplers] != parts


def test_distributed_sampler_arguments():
    with pytest.raises(ValueError, match='rank 2'):
        DistributedGroupSampler(_dataset([0, 1]), 1, num_replicas=2, rank=2)
    with pytest.raises(RuntimeError, match='init torch.distributed'):
        DistributedGroupSampler(_dataset([0, 1]), 1)
    with pytest.raises(AttributeError, match='flag'):
        GroupSampler(SimpleNamespace(), 1)
