"""Processes: where this process stands among torchrun's workers, the device it computes on, and the few collective
steps the verbs need to split their work and put it back together in the order one process would.

    procs = Processes.start("auto")          # rank 0 of 1 without torchrun; under torchrun, joins its group
    mine = procs.share(n_blocks)             # the blocks this rank computes: rank, rank + W, rank + 2W, ...
    parts = procs.all_gather_bytes(blob)     # every rank's bytes, in rank order, on every rank

One engine, the one training already uses: `torchrun --nproc_per_node N [--nnodes M --rdzv-endpoint HOST:PORT]
-m hnm VERB ...` starts N processes per machine with RANK, LOCAL_RANK and WORLD_SIZE set; the first call to
`Processes.start` joins them in a process group (gloo on the CPU, nccl on GPUs), and every later call, from any
module, returns the same one. The group lives until the process ends (`stop`, called by the command line).

How work is split. Every rank reads the same inputs and walks the same steps. Where the work is a list of blocks
(texts to embed in batches, queries to mine in chunks, queries to re-rank in passes), block i goes to rank
i mod W, and `in_order` hands every rank every block's result in block order, so what is written from it is
what one process writes. Only rank 0 writes outputs; the other ranks write nothing but their own embedding-cache
shards. The collectives move bytes in uint8 tensors (no pickle): a length first, then the padded payloads.

Devices. `resolve_device`: "auto" is the GPU of this rank's LOCAL_RANK when torch sees one, else the CPU; "cuda"
the same GPU, and an error where there is none; "cuda:N" that GPU; "cpu" the CPU.

Faults. torchrun's agent stops every worker when one exits with an error and names the failing rank, its exit code
or signal and (the command line records errors with torch's `record`) its traceback. A rank that hangs rather than
dies, or a machine lost mid-collective, is caught by the group's timeout: every collective waits at most
HNM_DIST_TIMEOUT seconds (default 1800) and then raises on the ranks still alive.

Not here: what is split (embed.py, miner.py, firststage.py, twostage.py) and gradient averaging (train.py, through
DistributedDataParallel).
"""

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, List, Optional, Tuple

import torch
import torch.distributed as dist

from hnm.config import DEVICES_HELP

_CURRENT: Optional["Processes"] = None


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto" | "cpu" | "cuda" | "cuda:N" -> the torch device (rules in the module docstring)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: torch sees no CUDA GPU here (torch {torch.__version__})")
        index = local_rank if name == "cuda" else name.split(":", 1)[1]
        if not str(index).isdigit() or int(index) >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s)")
        return torch.device(f"cuda:{index}")
    raise ValueError(f"device {name!r} is not one of {DEVICES_HELP}")


def timeout_seconds() -> float:
    value = os.environ.get("HNM_DIST_TIMEOUT", "1800")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"HNM_DIST_TIMEOUT={value!r} is not a number of seconds") from None


@dataclass(frozen=True)
class Processes:
    rank: int
    world: int
    device: torch.device

    @classmethod
    def start(cls, device: Optional[str] = None) -> "Processes":
        """This process's place among the torchrun workers, on `device` (rank 0 of 1 without torchrun); None: the
        device of an earlier call, else "auto". The group is joined once per process and kept by later calls."""
        global _CURRENT
        if device is None and _CURRENT is not None:
            return _CURRENT
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        chosen = resolve_device(device or "auto", local_rank)
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo",
                                    timeout=timedelta(seconds=timeout_seconds()))
        rank = dist.get_rank() if world > 1 else 0
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        _CURRENT = cls(rank, world, chosen)
        return _CURRENT

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def local_main(self) -> bool:
        """Whether this is the first process of its machine (torchrun's LOCAL_RANK 0): the one that writes the files
        that every process of the machine maps (ensemble.py)."""
        return int(os.environ.get("LOCAL_RANK", "0")) == 0

    @property
    def _wire(self) -> torch.device:
        """Where collective tensors live: the GPU for nccl, the CPU for gloo."""
        return self.device if dist.is_initialized() and dist.get_backend() == "nccl" else torch.device("cpu")

    def share(self, n_blocks: int, first: int = 0) -> range:
        """The blocks first .. n_blocks - 1 that this rank computes: those equal to first + rank modulo W."""
        return range(first + self.rank, n_blocks, self.world)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The elementwise mean over the processes of a float64 vector."""
        if self.world > 1:
            values = values.to(self._wire)
            dist.all_reduce(values)
            values = values.cpu() / self.world
        return values

    def all_min(self, values: torch.Tensor) -> torch.Tensor:
        """The elementwise minimum over the processes of an integer vector (e.g. "this rank has it": 0 or 1)."""
        if self.world > 1:
            values = values.to(self._wire)
            dist.all_reduce(values, op=dist.ReduceOp.MIN)
            values = values.cpu()
        return values

    def gather_bytes(self, values: torch.Tensor) -> List[torch.Tensor]:
        """Every process's uint8 vector (all the same length), in rank order."""
        if self.world == 1:
            return [values]
        parts = [torch.empty_like(values, device=self._wire) for _ in range(self.world)]
        dist.all_gather(parts, values.to(self._wire))
        return [p.cpu() for p in parts]

    def all_gather_bytes(self, blob: bytes) -> List[bytes]:
        """Every rank's bytes (any lengths), in rank order, on every rank."""
        if self.world == 1:
            return [blob]
        sizes = self.gather_bytes(torch.tensor(list(len(blob).to_bytes(8, "little")), dtype=torch.uint8))
        lengths = [int.from_bytes(bytes(s.tolist()), "little") for s in sizes]
        padded = torch.zeros(max(lengths), dtype=torch.uint8)
        padded[:len(blob)] = torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob else padded[:0]
        return [p[:n].numpy().tobytes() for p, n in zip(self.gather_bytes(padded), lengths)]

    def broadcast_bytes(self, blob: bytes) -> bytes:
        """Rank 0's bytes, on every rank (what the others pass is ignored)."""
        return self.all_gather_bytes(blob if self.main else b"")[0]

    def in_order(self, n_blocks: int, compute: Callable[[int], bytes], first: int = 0) -> Iterator[Tuple[int, bytes]]:
        """(i, compute(i)) for the blocks first .. n_blocks - 1, in block order, on every rank; each block computed
        on the rank `share` gives it. One all-gather per round of W blocks, so memory holds W blocks at a time."""
        for start in range(first, n_blocks, self.world):
            i = start + self.rank
            yield from zip(range(start, n_blocks), self.all_gather_bytes(compute(i) if i < n_blocks else b""))

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def current() -> Processes:
    """The processes started in this process, or rank 0 of 1 on the CPU when none was."""
    return _CURRENT if _CURRENT is not None else Processes(0, 1, torch.device("cpu"))


def stop() -> None:
    """Leave the process group (at the end of a command)."""
    global _CURRENT
    if dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = None
