"""Fargate sizes: every picked size is a documented combination, the smallest that fits."""

from __future__ import annotations

import pytest

from mxinfra_aws import fargate


@pytest.mark.parametrize(
    "memory,cpu,picked",
    [(512, 256, 512), (1024, 256, 1024), (1536, 512, 2048), (2048, 512, 2048), (3000, 1024, 3072), (4096, 1024, 4096), (8192, 2048, 8192), (20000, 8192, 20480), (65536, 16384, 65536), (100000, 16384, 106496), (122880, 16384, 122880)],
)
def test_pick(memory, cpu, picked):
    size = fargate.pick(memory)
    assert (size.cpu, size.memory_mb) == (cpu, picked)
    assert size in fargate.valid_sizes()


def test_every_memory_gets_a_valid_fitting_minimal_size():
    valid = set(fargate.valid_sizes())
    for memory in range(512, fargate.MAX_MEMORY_MB + 1, 256):
        size = fargate.pick(memory)
        assert size in valid and size.memory_mb >= memory and size.cpu >= fargate.min_cpu(memory)
        cheaper = [s for s in valid if s.memory_mb >= memory and s.cpu >= fargate.min_cpu(memory) and (s.cpu, s.memory_mb) < (size.cpu, size.memory_mb)]
        assert not cheaper


def test_too_big():
    with pytest.raises(ValueError, match="largest Fargate task"):
        fargate.pick(fargate.MAX_MEMORY_MB + 1)


def test_documented_table():
    sizes = fargate.valid_sizes()
    assert fargate.FargateSize(512, 256) in sizes and fargate.FargateSize(61440, 8192) in sizes
    assert fargate.FargateSize(1536, 256) not in sizes and fargate.FargateSize(18432, 8192) not in sizes
