"""The PyTorch side of ``netdsl train``: the data as tensors on the device, one loop.

The training set is held on the device as one NCHW tensor; each epoch permutes it
once (a ``torch.Generator`` seeded from ``(seed, epoch)``) and slices batches out of
it, so no per-sample Dataset/DataLoader work stands between the steps.  Losses and
hits are kept on the device and read once per epoch (or when the live bar redraws).

Optimizers take Keras's defaults (:data:`netdsl.settings.OPTIMIZERS`) and Keras's update
math: SGD (its momentum folds the learning rate into the velocity, as torch's does not), Adam
(eps added after the bias correction), RMSprop and Adagrad are Keras's formulas here
(:class:`KerasSGD`, :class:`KerasAdam`, :class:`KerasRMSprop`, :class:`KerasAdagrad`);
Adadelta and NAdam (``momentum_decay=1``: Keras's 0.96**t) are torch's, whose formulas equal
Keras's.  As in Keras, each step clips the gradients' global norm (``clip_norm``), then decays
the weights (``w -= lr * weight_decay * w``, decoupled: AdamW is Adam with weight decay 0.004),
then updates them, at the step's learning rate (:func:`netdsl.recipe.lr_at`).  The tests feed
both frameworks the same gradients and compare.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F

from .. import recipe
from .. import settings as table
from . import torch as backend
from . import torch_scale
from .torch import EPSILON

device = backend.device
EVAL_BATCH = 1024


def optimizer(name: str, params, lr: float, momentum: float = 0.0, nesterov: bool = False) -> torch.optim.Optimizer:
    """``name``'s torch optimizer with Keras's default hyperparameters (weight decay is :func:`update`'s)."""
    k = table.OPTIMIZERS[name]
    if name == "sgd":
        return KerasSGD(params, lr=lr, momentum=momentum, nesterov=nesterov)
    if name in ("adam", "adamw"):  # AdamW is Adam with weight decay: the trainer's, as for the others
        return KerasAdam(params, lr=lr, betas=(k["beta_1"], k["beta_2"]), eps=k["epsilon"])
    if name == "rmsprop":
        return KerasRMSprop(params, lr=lr, rho=k["rho"], eps=k["epsilon"])
    if name == "adagrad":
        return KerasAdagrad(params, lr=lr, initial=k["initial_accumulator_value"], eps=k["epsilon"])
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, rho=k["rho"], eps=k["epsilon"])
    if name == "nadam":
        betas = (k["beta_1"], k["beta_2"])
        return torch.optim.NAdam(params, lr=lr, betas=betas, eps=k["epsilon"], momentum_decay=1.0)
    raise ValueError(f"unknown optimizer {name!r}")


def _with_grads(opt: torch.optim.Optimizer):
    """Each parameter group with its parameters that have a gradient (groups with none skipped)."""
    for group in opt.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        if params:
            yield group, params


class KerasSGD(torch.optim.Optimizer):
    """SGD as Keras computes it: ``m = momentum m - lr g; w += m`` (Nesterov: ``w += momentum m - lr g``).

    torch's keeps ``lr`` out of the velocity (``b = momentum b + g; w -= lr b``), which is the
    same while the rate is constant and differs as soon as a schedule changes it.
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov})

    @torch.no_grad()
    def step(self, closure=None):
        for group, params in _with_grads(self):
            grads, lr, mu = [p.grad for p in params], group["lr"], group["momentum"]
            if mu == 0:
                torch._foreach_add_(params, grads, alpha=-lr)
                continue
            m = [self.state[p].setdefault("momentum", torch.zeros_like(p)) for p in params]
            torch._foreach_mul_(m, mu)
            torch._foreach_add_(m, grads, alpha=-lr)
            if group["nesterov"]:
                torch._foreach_add_(params, m, alpha=mu)
                torch._foreach_add_(params, grads, alpha=-lr)
            else:
                torch._foreach_add_(params, m)


class KerasAdam(torch.optim.Optimizer):
    """Adam as Keras computes it: ``w -= lr sqrt(1 - b2**t) / (1 - b1**t) m / (sqrt(v) + eps)``.

    torch's divides sqrt(v) by sqrt(1 - b2**t) before adding eps, which for gradients of about
    1e-4 and below takes steps up to 30 times larger than Keras's in the first steps.
    """

    def __init__(self, params, lr: float = 0.001, betas: tuple = (0.9, 0.999), eps: float = 1e-7):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group, params in _with_grads(self):
            grads, (b1, b2) = [p.grad for p in params], group["betas"]
            states = [self.state[p] for p in params]
            for st, p in zip(states, params, strict=True):
                if not st:
                    st.update(step=0, momentum=torch.zeros_like(p), velocity=torch.zeros_like(p))
                st["step"] += 1
            t = states[0]["step"]
            m, v = [st["momentum"] for st in states], [st["velocity"] for st in states]
            torch._foreach_lerp_(m, grads, 1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
            alpha = group["lr"] * (1 - b2**t) ** 0.5 / (1 - b1**t)
            denominator = torch._foreach_sqrt(v)
            torch._foreach_add_(denominator, group["eps"])
            torch._foreach_addcdiv_(params, m, denominator, value=-alpha)


class KerasAdagrad(torch.optim.Optimizer):
    """Adagrad as Keras computes it: ``a += g**2; w -= lr g / sqrt(a + eps)``, ``a`` starting at 0.1."""

    def __init__(self, params, lr: float = 0.001, initial: float = 0.1, eps: float = 1e-7):
        super().__init__(params, {"lr": lr, "initial": initial, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group, params in _with_grads(self):
            grads = [p.grad for p in params]
            acc = [self.state[p].setdefault("accumulator", torch.full_like(p, group["initial"])) for p in params]
            torch._foreach_addcmul_(acc, grads, grads)
            denominator = torch._foreach_add(acc, group["eps"])
            torch._foreach_sqrt_(denominator)
            torch._foreach_addcdiv_(params, grads, denominator, value=-group["lr"])


class KerasRMSprop(torch.optim.Optimizer):
    """RMSprop as Keras computes it: ``v = rho v + (1 - rho) g**2; w -= lr g / sqrt(v + eps)``.

    torch's RMSprop adds eps outside the square root, which for gradients below about
    1e-3 takes steps up to sqrt(1 / eps) times larger than Keras's.
    """

    def __init__(self, params, lr: float = 0.001, rho: float = 0.9, eps: float = 1e-7):
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, params in _with_grads(self):
            grads = [p.grad for p in params]
            velocity = [self.state[p].setdefault("velocity", torch.zeros_like(p)) for p in params]
            torch._foreach_mul_(velocity, group["rho"])
            torch._foreach_addcmul_(velocity, grads, grads, value=1 - group["rho"])
            denominator = torch._foreach_add(velocity, group["eps"])
            torch._foreach_sqrt_(denominator)
            torch._foreach_addcdiv_(params, grads, denominator, value=-group["lr"])
        return loss


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _tensor(a: np.ndarray, dtype) -> torch.Tensor:
    a = np.ascontiguousarray(a, dtype=dtype)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def _nchw(x: np.ndarray, where) -> torch.Tensor:
    """(N, H, W, C) float32 numpy -> (N, C, H, W) on the device."""
    t = _tensor(x, np.float32)
    return (t.movedim(-1, 1) if t.ndim > 2 else t).contiguous().to(where)  # NHWC -> NCHW, NLC -> NCL


def scores(
    model, x: torch.Tensor, y: torch.Tensor, kind: str = "probabilities", smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean sparse categorical cross-entropy, the outputs): Keras's loss, computed stably.

    ``kind`` is :func:`netdsl.recipe.output_kind`'s: a final softmax is scored on its logits;
    log-probabilities with NLL (PyTorch's MNIST example); logits from logits; any other output,
    as Keras does, as the logits ``log(clip(p, 1e-7, 1 - 1e-7))``.  ``smoothing``: label smoothing.
    """
    if kind == "probabilities" and model.netdsl_output_is_softmax:
        z = out = model.forward_logits(x)
    elif kind == "probabilities":
        out = model(x)
        if smoothing:  # Keras's categorical cross-entropy: normalise, clip, log, against smoothed labels
            z = torch.log((out / out.sum(1, keepdim=True)).clamp(EPSILON, 1 - EPSILON))
            return (1 - smoothing) * F.nll_loss(z, y) - smoothing * z.mean(1).mean(), out
        z = torch.log(out.clamp(EPSILON, 1 - EPSILON))  # Keras's sparse one: clip, log, log-softmax
    elif kind == "sigmoid":  # Keras's loss reads the logits the sigmoid kept; here they are recovered
        out = model(x)
        z = torch.logit(out, EPSILON)
    else:
        z = out = model(x)
        if kind == "log_probabilities" and not smoothing:
            return F.nll_loss(z, y), out
    return F.cross_entropy(z, y, label_smoothing=smoothing), out


def update(opt, params: list, lr: float, s, step=None) -> None:
    """One step as Keras's optimizers take it: at rate ``lr``, clip the gradients' global norm,
    decay the weights (decoupled; AdamW's is its own), then apply the optimizer's formula."""
    for group in opt.param_groups:
        group["lr"] = lr
    if s.clip_norm:
        clip_norm_([p.grad for p in params if p.grad is not None], s.clip_norm)
    if s.weight_decay:
        with torch.no_grad():
            torch._foreach_mul_(params, 1 - lr * s.weight_decay)
    opt.step() if step is None else step(opt)  # (fp16: the GradScaler's step, skipped on inf)


def clip_norm_(grads: list, clip: float) -> None:
    """Scale the gradients to a global norm of at most ``clip``, with Keras's formula (no sync)."""
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, clip * torch.minimum(1.0 / norm, torch.tensor(1.0 / clip, device=norm.device)))


def _mean_loss(losses: list, b: int, n: int) -> float:
    """The mean over images of per-batch mean losses (the last batch may be short), as Keras reports it."""
    t = torch.stack(losses).cpu().double()  # MPS has no float64
    last = n - b * (len(losses) - 1)
    return float((t[:-1].sum() * b + t[-1] * last) / n)


def evaluate(
    model, x, y, kind: str, smoothing: float = 0.0, device="cpu", world=None, autocast=None, fmt=None
) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` in inference mode over channels-last numpy images.

    The one scoring of a test set: the trainer's validation and test loss, and ``netdsl
    evaluate``'s, all by :func:`scores` (a final softmax scored on its logits).  Under torchrun
    each rank scores every N-th chunk and the sums are all-reduced (the buffers, batchnorm's
    running statistics, are rank 0's first, as DDP's are at each step).
    """
    world = world or torch_scale.World()
    autocast = autocast or contextlib.nullcontext
    fmt = fmt or torch.contiguous_format
    torch_scale.sync_buffers(model, world)
    was = model.training
    model.eval()
    total, hits = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64)
    losses, right = [], []
    with torch.no_grad():
        for k, i in enumerate(range(0, len(y), EVAL_BATCH)):
            if k % world.size != world.rank:
                continue
            xb = _nchw(x[i : i + EVAL_BATCH], device).contiguous(memory_format=fmt)
            yb = _tensor(y[i : i + EVAL_BATCH], np.int64).to(device)
            with autocast():
                loss, out = scores(model, xb, yb, kind, smoothing)  # as Keras reports it
            losses.append(loss.float() * len(yb))
            right.append((out.argmax(1) == yb).sum())
    model.train(was)
    if losses:
        total = torch.stack(losses).cpu().double().sum()  # on the CPU: MPS has no float64
        hits = torch.stack(right).sum().cpu()
    total, count = torch_scale.all_sum([float(total), float(hits)], world, device)
    return total / len(y), int(count) / len(y)


class Trainer:
    """One model, its optimizer and the training set on ``device``."""

    def __init__(self, net, s, device: str, x_train, y_train, model=None):
        if s.threads:
            torch.set_num_threads(s.threads)
        self.world, device = torch_scale.join(device)  # torchrun's ranks (rank 0 of 1 without it)
        self.s, self.device = s, device
        self.autocast = torch_scale.precision_context(s, device)  # E631 before any work
        torch.manual_seed(s.seed)  # the initial weights
        self.model = model if model is not None else backend.build(net, device=device)
        self.opt = optimizer(s.optimizer, self.model.parameters(), s.lr, s.momentum or 0.0, bool(s.nesterov))
        self.kind, self.params = recipe.output_kind(net.graph), [p for p in self.model.parameters() if p.requires_grad]
        self.fwd = torch_scale.prepare(self.model, s, self.world, device)  # the model itself on the plain path
        self.scaler = torch.amp.GradScaler("cuda") if s.precision == "fp16" else None
        self.steps = -(-(len(y_train) // self.world.size) // s.batch)
        self.lr_scale = 1.0  # the plateau schedule's, set by the loop before each epoch
        self.kept: dict = {}  # tensors saved with the optimizer state: the best weights of early stopping
        self.x = _nchw(x_train, device)
        self.y = _tensor(y_train, np.int64).to(device)
        self._x, self._y, self._preds = torch.empty_like(self.x), torch.empty_like(self.y), torch.empty_like(self.y)

    def train_epoch(self, seed: int, bar, epoch: int = 1) -> tuple[float, float]:
        """One pass over the training set in a seeded order; (mean loss, accuracy).

        Per step only two small ops of bookkeeping are added to the hand-written loop's: the
        loss is kept (detached, on the device) and the argmax written into a slice of
        ``preds``; both are summed when the epoch ends (or when the live bar redraws).
        """
        opt, b, world = self.opt, self.s.batch, self.world
        torch.manual_seed(seed + world.rank)  # dropout (each rank its own masks)
        order = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(seed))
        order = torch_scale.shard(order, world).to(self.device)  # all of it on one process
        n = len(order)
        # into buffers kept between epochs: a fresh 100 MB tensor costs its page faults each time
        x = torch.index_select(self.x, 0, order, out=self._x[:n])
        y = torch.index_select(self.y, 0, order, out=self._y[:n])
        if self.s.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        preds = self._preds[:n]
        losses: list[torch.Tensor] = []
        s, kind, params, first, fwd = self.s, self.kind, self.params, (epoch - 1) * self.steps, self.fwd
        self.model.train()
        for i in range(0, n, b):
            xb, yb = x[i : i + b], y[i : i + b]
            with self.autocast():
                loss, out = scores(fwd, xb, yb, kind, s.label_smoothing)
            opt.zero_grad(set_to_none=True)
            if self.scaler is None:
                loss.backward()
                update(opt, params, recipe.lr_at(s, first + i // b, self.steps, self.lr_scale), s)
            else:  # fp16: scaled loss, unscaled gradients before clipping, the step skipped on inf
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(opt)
                lr = recipe.lr_at(s, first + i // b, self.steps, self.lr_scale)
                update(opt, params, lr, s, step=self.scaler.step)
                self.scaler.update()
            losses.append(loss.detach().float())
            torch.argmax(out.detach(), 1, out=preds[i : i + b])
            if bar.due() and world.size == 1:  # (a rank alone must not leave the others' steps)
                seen = min(i + b, n)
                mean = _mean_loss(losses, b, seen)
                if not np.isfinite(mean):  # diverged: the caller reports the first bad step
                    break
                bar.update(len(losses), mean, (preds[:seen] == y[:seen]).sum().item() / seen)
        self._losses = losses
        seen = min(n, b * len(losses))
        total, hits, count = torch_scale.all_sum(
            [_mean_loss(losses, b, seen) * seen, float((preds[:seen] == y[:seen]).sum()), float(seen)],
            world,
            self.device,
        )
        return total / count, hits / count  # over every rank's images

    @property
    def scaled(self) -> dict:
        """What metrics.json records of the threads and the ranks."""
        out: dict = {"threads": torch.get_num_threads()}
        if self.world.size > 1:
            import torch.distributed as dist

            out["distributed"] = {
                "launcher": "torchrun",
                "backend": dist.get_backend(),
                "world_size": self.world.size,
                "batch_per_rank": self.s.batch,
                "global_batch": self.s.batch * self.world.size,
            }
        return out

    def sync_from_main(self) -> None:
        """Rank 0's loaded checkpoint on every rank (weights, optimizer state, kept tensors)."""
        torch_scale.sync_state(self, self.world)

    def first_nonfinite_step(self) -> int | None:
        """The first step of the last epoch whose loss was NaN or infinite (1-based), or None."""
        bad = ~torch.isfinite(torch.stack(self._losses))
        return int(bad.nonzero()[0, 0]) + 1 if bool(bad.any()) else None

    def evaluate(self, x, y) -> tuple[float, float]:
        """(mean loss, accuracy) in inference mode over channels-last numpy images (see :func:`evaluate`)."""
        fmt = torch.channels_last if self.s.channels_last else torch.contiguous_format
        return evaluate(
            self.model, x, y, self.kind, self.s.label_smoothing, self.device, self.world, self.autocast, fmt
        )

    # -- checkpoints: tensors to safetensors, the rest to JSON ------------------------------

    def optimizer_state(self) -> tuple[dict, dict]:
        sd = self.opt.state_dict()
        tensors, plain = {f"kept.{k}": v for k, v in self.kept.items()}, {}
        for idx, st in sd["state"].items():
            for key, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"{idx}.{key}"] = v.detach().cpu().numpy()
                else:
                    plain[f"{idx}.{key}"] = v
        groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
        return tensors, {"kind": type(self.opt).__name__, "param_groups": groups, "values": plain}

    def load_optimizer_state(self, tensors: dict, plain: dict) -> None:
        if plain.get("kind") != type(self.opt).__name__:
            from ..errors import NetdslError

            raise NetdslError("E603", f"the checkpoint holds {plain.get('kind')} state, not {type(self.opt).__name__}")
        state: dict = {}
        self.kept = {k[5:]: v for k, v in tensors.items() if k.startswith("kept.")}
        for key, v in tensors.items():
            if key.startswith("kept."):
                continue
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = torch.from_numpy(np.array(v))
        for key, v in plain["values"].items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = v
        groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in plain["param_groups"]]
        _check_state(self.opt, state, groups)
        self.opt.load_state_dict({"state": state, "param_groups": groups})


def _check_state(opt, state: dict, groups: list) -> None:
    """A checkpoint's optimizer state must fit ``opt``: torch would take it and fail at the next step."""
    from ..errors import NetdslError

    def bad(why: str) -> NetdslError:
        return NetdslError("E603", f"the checkpoint's {type(opt).__name__} state does not fit the net: {why}")

    params = [p for g in opt.param_groups for p in g["params"]]
    for idx, st in state.items():
        if not 0 <= idx < len(params):
            raise bad(f"state for parameter {idx}, of {len(params)}")
        for name, v in st.items():
            if torch.is_tensor(v):
                want = () if name == "step" else tuple(params[idx].shape)
                if tuple(v.shape) != want or not v.is_floating_point():
                    raise bad(f"`{idx}.{name}` is {v.dtype} {tuple(v.shape)}, expected float {want}")
            elif v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise bad(f"`{idx}.{name}` is {v!r}")
    mine = opt.state_dict()["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(mine):
        raise bad("its parameter groups differ")
    for g, m in zip(groups, mine, strict=True):
        if not isinstance(g, dict) or g.get("params") != m["params"]:
            raise bad("its parameter groups differ")
        for key, v in g.items():  # keys of another torch version are left to torch
            if key == "params" or key not in m:
                continue
            ok = _real(v) and _real(m[key]) or type(v) is type(m[key])
            if isinstance(v, tuple):
                ok = ok and len(v) == len(m[key]) and all(map(_real, v))
            if not ok or (_real(v) and not math.isfinite(v)):
                raise bad(f"its `{key}` is {v!r}")
