"""The torch trainer's opt-in speed and data parallelism (see :mod:`netdsl.scale`).

* Under torchrun (``WORLD_SIZE`` set), :func:`join` starts ``torch.distributed`` (gloo on the
  CPU, nccl on CUDA with the GPU ``LOCAL_RANK``) and the model is wrapped in
  ``DistributedDataParallel``: gradients are averaged over the ranks in the backward pass.
  Each epoch every rank draws the same seeded permutation and takes its own disjoint,
  equal-sized shard of it (rank r: positions r, r + N, ...; the n mod N images left over
  change from epoch to epoch), so every rank takes the same number of steps.
* ``--channels-last`` puts the weights and the batches in NHWC memory format, ``--precision``
  runs the forward pass and loss under ``torch.autocast`` (fp16 with a GradScaler, CUDA
  only), and ``--compile`` runs ``torch.compile`` on what the steps call.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import os
import warnings

import torch

from ..errors import NetdslError
from ..scale import World

TIMEOUT = datetime.timedelta(seconds=int(os.environ.get("NETDSL_DIST_TIMEOUT", "300")))


def join(device: str | None) -> tuple[World, str | None]:
    """Start torch.distributed when torchrun launched this process; (the world, the device to use)."""
    import torch.distributed as dist

    world = World.current()
    if world.size == 1 and not dist.is_torchelastic_launched():
        return world, device
    cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if cuda:
        if world.local_rank >= torch.cuda.device_count():
            raise NetdslError(
                "E633",
                f"LOCAL_RANK {world.local_rank} has no GPU ({torch.cuda.device_count()} visible)",
                hint="start at most one process per GPU (--nproc-per-node)",
            )
        device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(device)
    elif device is None:
        device = "cpu"
    if not dist.is_initialized():
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
        if missing:  # WORLD_SIZE and RANK alone: not a torchrun launch (torch would raise ValueError)
            raise NetdslError(
                "E633",
                f"WORLD_SIZE={world.size} is set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not",
                hint="start the ranks with torchrun (or --nproc N), or unset WORLD_SIZE and RANK",
            )
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return world, device


def precision_context(s, device: str):
    """The forward pass's autocast (E631 where the device cannot run the precision)."""
    if s.precision == "fp32":
        return contextlib.nullcontext
    kind = torch.device(device).type
    if s.precision == "fp16" and kind != "cuda":
        raise NetdslError(
            "E631",
            f"--precision fp16 needs a CUDA GPU (float16 training with a GradScaler); the device is {device}",
            hint="on the CPU use --precision bf16",
        )
    if s.precision == "bf16":
        ok = (
            torch.cuda.is_bf16_supported()
            if kind == "cuda"
            else kind == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
        if not ok:
            raise NetdslError(
                "E631", f"--precision bf16 is not supported on {device} by this torch", hint="use --precision fp32"
            )
    dtype = torch.bfloat16 if s.precision == "bf16" else torch.float16
    return lambda: torch.autocast(kind, dtype=dtype)


class Head(torch.nn.Module):
    """What a training step calls: the logits of a final softmax, else the outputs.

    DDP and torch.compile see only ``forward``, so the model's ``forward_logits`` is made one.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.logits = bool(getattr(model, "netdsl_output_is_softmax", False))

    def forward(self, x):
        return self.model.forward_logits(x) if self.logits else self.model(x)


class Stepper:
    """Stands in for the model in :func:`netdsl.backends.torch_train.scores` during training."""

    def __init__(self, model, fwd):
        self.netdsl_output_is_softmax = bool(getattr(model, "netdsl_output_is_softmax", False))
        self.fwd = fwd

    def forward_logits(self, x):
        return self.fwd(x)

    def __call__(self, x):
        return self.fwd(x)


def prepare(model, s, world: World, device: str):
    """The Stepper the steps call: channels-last, DDP and torch.compile as ``s`` asks, in that order."""
    if s.channels_last:
        model.to(memory_format=torch.channels_last)
    if world.size == 1 and not s.compile:
        return model  # the plain path: exactly what it was
    fwd: torch.nn.Module = Head(model)
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(device).index] if device.startswith("cuda") else None
        # a conv with one input channel gets gradients of another (equally dense) stride order
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        fwd = DistributedDataParallel(fwd, device_ids=ids, gradient_as_bucket_view=True)
    if s.compile:
        with warnings.catch_warnings():  # (inductor's imports use torch.jit APIs torch itself deprecates)
            warnings.simplefilter("ignore", DeprecationWarning)
            importlib.import_module("torch._inductor.compile_fx")

            fwd = torch.compile(fwd)
    return Stepper(model, fwd)


def shard(order: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's disjoint, equal-sized part of the epoch's order (n mod N images sit out)."""
    if world.size == 1:
        return order
    n = len(order) // world.size * world.size
    return order[world.rank : n : world.size]


def all_sum(values: list[float], world: World, device: str) -> list[float]:
    """The sums over the ranks of ``values`` (float64)."""
    if world.size == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device if device.startswith("cuda") else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def broadcast(obj, world: World):
    """Rank 0's ``obj`` on every rank (pickled: only for small things and rank 0's own data)."""
    if world.size == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn, world: World):
    """``fn()`` on rank 0, its result on every rank; its NetdslError raised on rank 0 (which
    reports it) and :class:`netdsl.scale.RankStopped` on the others (which stay quiet)."""
    from ..scale import RankStopped

    result, error = None, None
    if world.main:
        try:
            result = fn()
        except NetdslError as e:
            error = e
    box = broadcast({"result": result, "error": None if error is None else error.code}, world)
    if error is not None:
        raise error
    if box["error"] is not None:
        raise RankStopped(f"rank 0 stopped with {box['error']}")
    return box["result"]


def sync_state(trainer, world: World) -> None:
    """After rank 0 loaded a checkpoint: its weights, optimizer state and kept tensors on every rank."""
    if world.size == 1:
        return
    import torch.distributed as dist

    for t in trainer.model.state_dict().values():
        dist.broadcast(t, src=0)  # (state_dict's tensors share the parameters' storage)
    state = broadcast(
        {"opt": trainer.opt.state_dict() if world.main else None, "kept": trainer.kept if world.main else None}, world
    )
    if not world.main:
        trainer.opt.load_state_dict(state["opt"])
        trainer.kept = state["kept"]


def sync_buffers(model, world: World) -> None:
    """Rank 0's buffers (batchnorm's running statistics) on every rank."""
    if world.size == 1:
        return
    import torch.distributed as dist

    for t in model.buffers():
        dist.broadcast(t, src=0)


def leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
