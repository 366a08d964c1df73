"""Many processes on ``torch.distributed``: who this process is, and the few collectives a fit
and a sampler need.

A fit or a sampler runs distributed when it is started by a launcher that sets the
environment of ``torch.distributed``: ``torchrun`` / ``python -m torch.distributed.run`` (what
``sedge fit --nproc N`` starts), or a cluster scheduler. :func:`world` reads ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` (else SLURM's ``SLURM_PROCID``, ``SLURM_NTASKS`` and
``SLURM_LOCALID``) and joins the process group on first use: gloo on the CPU, NCCL on CUDA.
Every process must make the same calls (``fit``, ``sample``, ``save``) in the same order, as
with any ``torch.distributed`` program. Without such an environment everything runs in this
process and nothing here communicates.

The design is data parallel (``DistributedDataParallel``): each process reads its own share of
the rows, gradients are averaged, every process holds the same parameters, and rank 0 writes
files. Nothing here schedules work: the launcher places the processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sedge_pyro.errors import OptionError

__all__ = ["World", "all_sum", "barrier", "world"]


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one job.

    :param rank: this process's number, 0 .. ``size - 1``.
    :param size: the number of processes (1: not distributed).
    :param local_rank: its number on this machine (picks its GPU).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that writes files and prints."""
        return self.rank == 0


def _env_int(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value is not None and value != "":
            try:
                return int(value)
            except ValueError:
                raise OptionError(
                    f"environment variable {name}={value!r}: expected a whole number"
                ) from None
    return None


def world(device: torch.device | str = "cpu") -> World:
    """This process's :class:`World`, joining the process group on first use.

    :param device: the device of the fit; CUDA uses NCCL (and this process's ``LOCAL_RANK``
        GPU, set by the caller), the CPU gloo.
    :raises OptionError: for a malformed environment, or a SLURM job of several tasks without
        ``MASTER_ADDR`` (the address of rank 0, e.g. ``export MASTER_ADDR=$(scontrol show
        hostnames $SLURM_JOB_NODELIST | head -n1)``).

    >>> world()
    World(rank=0, size=1, local_rank=0)
    """
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK") or 0)
    size = _env_int("WORLD_SIZE")
    if size is None:
        size = _env_int("SLURM_NTASKS")
        if size is not None and size > 1:
            if "MASTER_ADDR" not in os.environ:
                raise OptionError(
                    f"SLURM_NTASKS={size} but MASTER_ADDR is not set: export the address of "
                    "rank 0, e.g. MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | "
                    "head -n1), and MASTER_PORT (default 29500)"
                )
            os.environ.setdefault("MASTER_PORT", "29500")
            os.environ["WORLD_SIZE"] = str(size)
            os.environ["RANK"] = str(_env_int("SLURM_PROCID") or 0)
            os.environ["LOCAL_RANK"] = str(_env_int("SLURM_LOCALID") or 0)
    if size is None or size <= 1:
        return World()
    rank = _env_int("RANK") or 0
    if not 0 <= rank < size:
        raise OptionError(f"RANK={rank} with WORLD_SIZE={size}: expected 0 <= RANK < WORLD_SIZE")
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=rank, world_size=size)
    return World(rank, size, _env_int("LOCAL_RANK") or 0)


def all_sum(values: list[float], where: World, device: torch.device | str = "cpu") -> list[float]:
    """The sums of ``values`` over all processes (``values`` itself in one process)."""
    if not where.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier(where: World) -> None:
    """Wait for every process (nothing in one process)."""
    if where.distributed:
        dist.barrier()
