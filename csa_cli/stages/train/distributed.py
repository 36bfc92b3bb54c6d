"""torch.distributed for `csa train`: the worker's view (rank, world, device) and the single-node launcher.

Workers are started by torchrun's elastic launcher (`torch.distributed.launcher.api.elastic_launch`,
what `torchrun` itself calls), each running `python -m csa_cli train ...`; they read RANK,
LOCAL_RANK, WORLD_SIZE and MASTER_ADDR/PORT from the environment it sets. NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from csa_cli.errors import CsaError, ExitCode, MissingBackend, UsageError

WORKER_ENV = "CSA_TRAIN_WORKER"  # set by our launcher: its workers leave the final record to it


@dataclass(frozen=True)
class World:
    rank: int
    local_rank: int
    size: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MissingBackend("--device cuda: no CUDA GPU here", hint="use --device cpu, or run on a machine with a GPU")
    return device


def check_launch(nproc: int, device: str) -> None:
    """--nproc-per-node against what the node has: one process per GPU on CUDA, CPU cores for gloo."""
    import torch

    if nproc < 1:
        raise UsageError(f"--nproc-per-node must be at least 1, got {nproc}")
    if device.startswith("cuda"):
        gpus = torch.cuda.device_count()
        if nproc > gpus:
            raise MissingBackend(f"--nproc-per-node {nproc} asks for {nproc} GPUs; this node has {gpus}", hint=f"use --nproc-per-node {gpus} or fewer")
    elif nproc > (os.cpu_count() or 1):
        raise MissingBackend(f"--nproc-per-node {nproc} on CPU: this node has {os.cpu_count()} cores", hint=f"use --nproc-per-node {os.cpu_count()} or fewer")


def init_world(device: str) -> World:
    """This process's place: from torchrun's environment, or a world of one."""
    import torch
    import torch.distributed as dist

    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device)
    if chosen == "cuda":
        chosen = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.startswith("cuda") else "gloo")
    return World(rank=rank, local_rank=local_rank, size=size, device=chosen)


def close_world(world: World) -> None:
    import torch.distributed as dist

    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def any_rank(world: World, flag: bool) -> bool:
    """True on every rank when any rank says so (a signal seen by one process stops all at the same step)."""
    if not world.distributed:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0], device=world.device if world.device.startswith("cuda") else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def is_worker() -> bool:
    """Started by a launcher (ours or torchrun): one of the training processes."""
    return "LOCAL_RANK" in os.environ


def launch(argv: list[str], *, nproc: int, nnodes: int, node_rank: int, rdzv_endpoint: str | None, device: str) -> None:
    """Run `python -m csa_cli train <argv>` on `nproc` processes of this node through torchrun's elastic launcher."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    check_launch(nproc, resolve_device(device))
    multi_node = nnodes > 1
    if multi_node and not rdzv_endpoint:
        raise UsageError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT (the first node's address)", hint="every node gives the same endpoint")
    config = LaunchConfig(
        min_nodes=nnodes,
        max_nodes=nnodes,
        nproc_per_node=nproc,
        run_id="csa-train",
        rdzv_backend="c10d",
        rdzv_endpoint=rdzv_endpoint or "127.0.0.1:0",
        rdzv_configs={"rank": node_rank} if multi_node else {},
        max_restarts=0,
        monitor_interval=0.1,
    )
    os.environ[WORKER_ENV] = "1"
    try:
        elastic_launch(config, sys.executable)("-m", "csa_cli", "train", *argv)
    except ChildFailedError as exc:
        codes = sorted({f.exitcode for f in exc.failures.values()})
        code = codes[0] if codes else 1
        verdict = ExitCode(code) if code in {c.value for c in ExitCode} else ExitCode.FAILURE  # the worker's own exit code
        raise CsaError(
            f"a training process failed (exit code {code}); its Error line is above", hint="rerun with --nproc-per-node 1 to see it alone", exit_code=verdict
        ) from None
    finally:
        os.environ.pop(WORKER_ENV, None)


def launcher_args(argv: list[str]) -> list[str]:
    """The command line for the workers: this one without the launcher's own options."""
    drop_value = {"--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-endpoint"}
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in drop_value:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def prints_record() -> bool:
    """Whether this worker prints the final record: rank 0 under plain torchrun; none under our launcher (it prints it)."""
    return WORKER_ENV not in os.environ and int(os.environ.get("RANK", "0")) == 0
