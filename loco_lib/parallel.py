"""Long sweeps split over the processes of one machine (``accelerate launch``, one process per GPU).

A LocoGen search (paper Algorithm 1, Sec. 5.1), a causal trace (Sec. 4) or an evaluation (Sec. 6:
Fig. 8, Table 1) is a list of independent generations. Started with several processes, e.g.::

    accelerate launch --multi_gpu --num_processes 4 -m loco_lib locogen sd15 --attribute style --window 2 --cache runs/style

every process runs the same command; the sweep engine (:func:`loco_lib.sweep.run_sweep`) and
:func:`loco_lib.generate.generate` (hence :func:`loco_lib.evaluate.evaluate` and
:func:`~loco_lib.evaluate.compare`) cut their pending work into the batches a single process would
make, and process ``r`` of ``n`` takes batches ``r, r + n, r + 2n, ...``; the tracer
(:func:`loco_lib.trace.trace`) deals out its pending (prompt, seed) groups the same way. So every
image is computed in exactly the batch it would have had in one process (the batch composition
moves images by float rounding), each process writes the entries it finished into
the same resumable cache, and the results are gathered so that every process goes on with all of
them. Every process reads the cache before any writes to it (:func:`barrier`), so all deal out the
same pending work. Only the first process prints, writes files and shows progress bars. Each process loads the
model onto its own GPU (``cuda:LOCAL_RANK``).

One process (no ``WORLD_SIZE`` in the environment, or 1) is the ordinary case: nothing is split and
nothing is gathered. The split is tested with two CPU processes (``torchrun --nproc_per_node 2``,
the launcher ``accelerate launch`` uses; ``tests/test_parallel.py``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    index: int = 0  # this process
    count: int = 1  # processes in the run
    local: int = 0  # this process on its machine (its GPU)

    @property
    def main(self) -> bool:
        return self.index == 0

    def share(self, items: list) -> list:
        """This process's part of ``items``: every ``count``-th, starting at its index."""
        return list(items)[self.index :: self.count]


_STATE: dict = {}


def world() -> World:
    """The processes of this run, read from the launcher's environment (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``). With more than one, the process group is set up once through accelerate
    (NCCL on GPUs, Gloo on CPUs)."""
    count = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if count <= 1:
        return World()
    if "state" not in _STATE:
        import torch
        from accelerate import PartialState

        _STATE["state"] = PartialState(cpu=not torch.cuda.is_available())
    state = _STATE["state"]
    return World(state.process_index, state.num_processes, state.local_process_index)


def device() -> str | None:
    """This process's GPU in a multi-process run with CUDA (``cuda:LOCAL_RANK``); None otherwise."""
    import torch

    w = world()
    if w.count > 1 and torch.cuda.is_available():
        return f"cuda:{w.local % torch.cuda.device_count()}"
    return None


def barrier() -> None:
    """Wait until every process of the run has come here (returns at once in one process). A sweep
    calls it between reading its cache and writing to it, so that every process deals out the
    same pending work, however late it started."""
    if world().count > 1:
        _STATE["state"].wait_for_everyone()


def gather(items: list) -> list:
    """Every process's ``items`` (picklable), concatenated in process order, on every process."""
    w = world()
    if w.count == 1:
        return list(items)
    from accelerate.utils import gather_object

    return list(gather_object(list(items)))


def batches(n: int, size: int) -> list[list[int]]:
    """``range(n)`` cut into consecutive batches of ``size`` (the last one may be shorter)."""
    return [list(range(i, min(n, i + size))) for i in range(0, n, size)]
