"""Container Apps sizes: the CPU/memory pairs the Consumption workload profile accepts. Pure.

Consumption containers take 0.25 to 4 vCPU in steps of 0.25 with exactly 2 GiB of memory per vCPU
(0.25/0.5Gi, 0.5/1Gi, ... 4/8Gi); the Mendix runtime gets MEMORY_LIMIT = the environment's memory.
"""

from __future__ import annotations

from dataclasses import dataclass

STEP_CPU = 0.25
MIN_CPU = 0.25
MAX_CPU = 4.0
MEMORY_MB_PER_CPU = 2048
MAX_MEMORY_MB = int(MAX_CPU * MEMORY_MB_PER_CPU)


@dataclass(frozen=True)
class AppSize:
    """One container's CPU and memory."""

    cpu: float
    memory_mb: int

    @property
    def memory(self) -> str:
        """Container Apps notation (`2Gi`, `1.5Gi`)."""
        gib = self.memory_mb / 1024
        return f"{gib:g}Gi"

    def describe(self) -> str:
        """`1 vCPU / 2Gi`."""
        return f"{self.cpu:g} vCPU / {self.memory}"


def valid_cpu(cpu: float) -> bool:
    """Whether `cpu` is a Consumption step (0.25 to 4 in steps of 0.25)."""
    return MIN_CPU <= cpu <= MAX_CPU and (cpu / STEP_CPU).is_integer()


def pick(memory_mb: int, cpu: float | None = None) -> AppSize:
    """The size for an environment: with `cpu`, exactly that pair (ValueError if the memory does not
    match it); without, the smallest pair with at least `memory_mb`."""
    if cpu is not None:
        if not valid_cpu(cpu):
            raise ValueError(f"{cpu:g} vCPU is not a Container Apps size (0.25 to 4 in steps of 0.25)")
        size = AppSize(cpu, int(cpu * MEMORY_MB_PER_CPU))
        if size.memory_mb != memory_mb:
            raise ValueError(f"{cpu:g} vCPU comes with {size.memory} ({size.memory_mb} MB), not {memory_mb} MB: Container Apps gives 2 GiB per vCPU")
        return size
    if memory_mb > MAX_MEMORY_MB:
        raise ValueError(f"{memory_mb} MB does not fit a Container Apps Consumption container (at most {MAX_MEMORY_MB} MB, 4 vCPU / 8Gi)")
    steps = max(1, -(-memory_mb // int(STEP_CPU * MEMORY_MB_PER_CPU)))
    cpu = steps * STEP_CPU
    return AppSize(cpu, int(cpu * MEMORY_MB_PER_CPU))
