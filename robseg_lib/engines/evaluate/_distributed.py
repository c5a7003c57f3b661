"""Rank, world and rank-0 helpers of a sharded evaluation (a no-op group outside ``torchrun``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    pass

_T = TypeVar("_T")


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def from_rank0(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on rank 0 and give its value to every rank; an exception there is raised on every rank."""
        if not self.active:
            return fn()
        box: list[Any] = [None, None]
        if self.rank == 0:
            try:
                box[0] = fn()
            except Exception as err:
                box[1] = f"{type(err).__name__}: {err}"
                dist.broadcast_object_list(box, src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        if box[1] is not None:
            raise RuntimeError(f"rank 0 failed: {box[1]}")
        return box[0]


@contextlib.contextmanager
def _distributed(device: torch.device) -> Iterator[_Dist]:
    """The process group of a torchrun launch (initialised here if needed), or a single process."""
    if dist.is_available() and dist.is_initialized():
        yield _Dist(dist.get_rank(), dist.get_world_size())
        return
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield _Dist()
        return
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(hours=12))
    try:
        yield _Dist(dist.get_rank(), dist.get_world_size())
    finally:
        dist.destroy_process_group()
