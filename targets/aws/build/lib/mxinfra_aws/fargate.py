"""Fargate task sizes: the valid CPU/memory combinations and the smallest one that fits an environment. Pure."""

from __future__ import annotations

from dataclasses import dataclass

# (cpu units, memory MiB values) as documented for Fargate Linux tasks (platform 1.4.0).
_COMBINATIONS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (256, (512, 1024, 2048)),
    (512, tuple(range(1024, 4096 + 1, 1024))),
    (1024, tuple(range(2048, 8192 + 1, 1024))),
    (2048, tuple(range(4096, 16384 + 1, 1024))),
    (4096, tuple(range(8192, 30720 + 1, 1024))),
    (8192, tuple(range(16384, 61440 + 1, 4096))),
    (16384, tuple(range(32768, 122880 + 1, 8192))),
)
MAX_MEMORY_MB = 122880
MAX_CPU = 16384
# Mendix Cloud sizes its containers at one vCPU per 4 GB of memory (e.g. 4 GB with 1 vCPU).
MB_PER_VCPU = 4096


@dataclass(frozen=True, order=True)
class FargateSize:
    """One valid task size."""

    memory_mb: int
    cpu: int

    @property
    def vcpu(self) -> float:
        """The size's vCPUs."""
        return self.cpu / 1024

    def describe(self) -> str:
        """`0.5 vCPU / 2048 MiB` style text."""
        return f"{self.vcpu:g} vCPU ({self.cpu} units) / {self.memory_mb} MiB"


def valid_sizes() -> list[FargateSize]:
    """Every valid combination, smallest memory first, then fewest CPU units."""
    return sorted(FargateSize(m, c) for c, mems in _COMBINATIONS for m in mems)


def min_cpu(memory_mb: int) -> int:
    """CPU units a runtime with `memory_mb` needs: Mendix Cloud's ratio of 1 vCPU per 4 GB, at most 16 vCPU."""
    return min(MAX_CPU, -(-memory_mb * 1024 // MB_PER_VCPU))


def pick(memory_mb: int) -> FargateSize:
    """The smallest valid size (fewest CPU units, then least memory) with the memory and the CPU ratio."""
    need = min_cpu(memory_mb)
    fitting = [s for s in valid_sizes() if s.memory_mb >= memory_mb and s.cpu >= need]
    if not fitting:
        raise ValueError(f"{memory_mb} MB is more than the largest Fargate task ({MAX_MEMORY_MB} MiB)")
    return min(fitting, key=lambda s: (s.cpu, s.memory_mb))
