"""The torch layers and functions the importer knows, as netdsl nodes (a mixin of the reader).

:class:`Layers` turns one supported ``torch.nn`` module (``module``) into netdsl nodes, and
:data:`FUNCS` / :data:`METHODS` do the same for ``torch``/``F`` functions and tensor methods,
each given the reader, the fx node, its tensor inputs and torch's output shape.  What does not
fit netdsl's semantics exactly is refused through ``reader.fail`` with the reason.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .torch_import_seq import SeqNorms, _np, _same_pads


class _V(NamedTuple):
    """A traced tensor: its netdsl node, torch's shape (batch first), and its element order."""

    node: str
    shape: tuple
    perm: tuple | None = None  # a vector flattened in torch's (C, H, W) order: that (C, H, W)
    squeezed: bool = False  # torch has (N, C, 1, 1) where netdsl has the vector (C,)
    pad1d: tuple | None = None  # F.pad of a sequence, for the one 1-D layer reading it: (left, right, value, source)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def _bind(fxn: fx.Node, names: tuple, defaults: dict) -> dict:
    out = dict(defaults)
    out.update(zip(names, fxn.args, strict=False))  # more args than names: bound by the caller
    out.update(fxn.kwargs)
    return out


class Layers(SeqNorms):
    """The modules: each method adds the nodes for one torch layer (``self`` is the reader)."""

    def module(self, base, m, x: _V, where: str, kind: str, shape) -> _V:
        if base is nn.Conv2d:
            return self.conv(m, x, where, kind, shape)
        if base is nn.Linear:
            x = self.as_vector(x, where, kind)
            w = _np(m.weight).T  # (out, in) -> (in, out)
            if x.perm:
                w = w[_perm(x.perm)]
            weights = {"kernel": w}
            if m.bias is not None:
                weights["bias"] = _np(m.bias)
            args = {"units": m.out_features, "bias": m.bias is not None}
            return self.add("dense", args, [x], where, weights, shape=shape)
        if base is nn.Conv1d:
            return self.conv1d(m, x, where, kind, shape)
        if base in (nn.MaxPool1d, nn.AvgPool1d):
            return self.pool1d(base, m, x, where, kind, shape)
        if base is nn.LayerNorm:
            return self.layernorm(m, x, where, kind, shape)
        if base is nn.GroupNorm:
            return self.groupnorm(m, x, where, kind, shape)
        if base in (nn.BatchNorm1d, nn.BatchNorm2d):
            return self.batchnorm(m, x, where, kind, shape)
        if base is nn.MaxPool2d or base is nn.AvgPool2d:
            k = _pair(m.kernel_size)
            s = _pair(m.stride if m.stride is not None else m.kernel_size)
            opts = {"padding": _pair(m.padding), "ceil_mode": m.ceil_mode}
            if base is nn.MaxPool2d:
                opts.update(dilation=_pair(m.dilation), return_indices=m.return_indices)
            else:
                opts.update(count_include_pad=m.count_include_pad, divisor_override=m.divisor_override)
                if kind == "AvgPool2dSame":  # netdsl's own: TF same padding, averages over real pixels
                    return self.add("avgpool", {"size": k, "stride": s, "padding": "same"}, [x], where, shape=shape)
            return self.pool("maxpool" if base is nn.MaxPool2d else "avgpool", x, k, s, opts, where, kind, shape)
        if base in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d):
            return self.adaptive("gap" if base is nn.AdaptiveAvgPool2d else "gmp", x, m.output_size, where, kind, shape)
        if base is nn.Flatten:
            if m.start_dim != 1 or m.end_dim != -1:
                self.fail(where, kind, f"flattens dims {m.start_dim}..{m.end_dim}; netdsl flattens all but the batch")
            return self.flatten(x, where, kind, shape)
        if base is nn.Dropout:
            return self.add("dropout", {"rate": float(m.p)}, [x], where, shape=shape, perm=x.perm, squeezed=x.squeezed)
        if base is nn.Identity:
            return x
        if base is nn.Upsample:
            return self.upsample(x, m.scale_factor, m.mode, m.size, where, kind, shape)
        if base is nn.ZeroPad2d:
            left, right, top, bottom = m.padding
            return self.pad(x, (left, right, top, bottom), 0.0, "constant", where, kind, shape, len(self.cur.users))
        if base in (nn.Softmax, nn.LogSoftmax):
            return self.softmax(nn.Softmax if base is nn.Softmax else nn.LogSoftmax, x, m.dim, where, kind, False)
        return self.activation(base, m, x, where, kind, functional=False)

    def conv(self, m, x: _V, where, kind, shape) -> _V:
        cin, g = m.in_channels, m.groups
        depthwise = g > 1 and g == cin and m.out_channels % cin == 0
        if m.padding_mode != "zeros":
            self.fail(where, kind, f"pads with `{m.padding_mode}`; netdsl pads with zeros only")
        x = self.as_map(x, where, kind)
        k, s, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
        if max(s) > 1 and max(d) > 1 and not depthwise:
            self.fail(where, kind, "combines a stride > 1 with a dilation > 1 (netdsl and Keras refuse it)")
        h, w = x.shape[2], x.shape[3]
        if m.padding == "same":
            pads = (*_same_pads(h, k[0], s[0], d[0]), *_same_pads(w, k[1], s[1], d[1]))
        elif m.padding == "valid":
            pads = (0, 0, 0, 0)
        else:
            ph, pw = _pair(m.padding)
            pads = (ph, ph, pw, pw)
        padding = "valid"
        if any(pads):
            same = (*_same_pads(h, k[0], s[0], d[0]), *_same_pads(w, k[1], s[1], d[1]))
            if pads == same:
                padding = "same"
            else:  # torch's symmetric padding is not TF's `same` here (stride 2): pad explicitly
                t, b, lf, r = pads
                padded = (*x.shape[:2], h + t + b, w + lf + r)
                x = self.add("pad", {"top": t, "bottom": b, "left": lf, "right": r}, [x], f"{where}_pad", shape=padded)
        elif x.node in self.pad_src:  # F.pad(x, ...) then a valid conv: TF `same` when the pads are its pads
            src, a = self.pad_src[x.node]
            sh, sw = src.shape[2], src.shape[3]
            same = (*_same_pads(sh, k[0], s[0], d[0]), *_same_pads(sw, k[1], s[1], d[1]))
            if (a["top"], a["bottom"], a["left"], a["right"]) == same:
                self.nodes = [n for n in self.nodes if n.name != x.node]
                x, padding = src, "same"
        wt = _np(m.weight)
        args = {"kernel": k, "stride": s, "padding": padding, "dilation": d, "bias": m.bias is not None}
        if depthwise:  # (C*M, 1, kh, kw) -> Keras's DepthwiseConv2D (kh, kw, C, M)
            mult = m.out_channels // cin
            weights = {"kernel": wt.reshape(cin, mult, *k).transpose(2, 3, 0, 1)}
            args["multiplier"] = mult
        else:  # OIHW -> HWIO; a grouped kernel's I is C/groups in both layouts
            weights = {"kernel": wt.transpose(2, 3, 1, 0)}
            args.update(filters=m.out_channels, groups=g)
        if m.bias is not None:
            weights["bias"] = _np(m.bias)
        return self.add("dwconv" if depthwise else "conv", args, [x], where, weights, shape=shape)

    def batchnorm(self, m, x: _V, where, kind, shape) -> _V:
        if not m.affine:
            self.fail(where, kind, "has no learned scale and shift (affine=False); netdsl's batchnorm always has them")
        if not m.track_running_stats or m.running_mean is None:
            self.fail(where, kind, "keeps no running statistics (track_running_stats=False)")
        if m.momentum is None:
            self.fail(where, kind, "uses a cumulative average (momentum=None); netdsl's batchnorm has a momentum")
        if not 0 <= m.momentum <= 1:  # NaN too
            self.fail(where, kind, f"has momentum={m.momentum}; netdsl's batchnorm takes one in [0, 1]")
        if len(x.shape) == 4 and not x.squeezed:
            x = self.as_map(x, where, kind)
        elif len(x.shape) not in (2, 3) and not x.squeezed:
            self.fail(
                where,
                kind,
                f"normalises a tensor of shape {tuple(x.shape[1:])}; netdsl takes (C,), (C, L) or (C, H, W)",
            )
        ws = {
            "gamma": m.weight,
            "beta": m.bias,
            "moving_mean": m.running_mean,
            "moving_variance": m.running_var,
        }
        ws = {k: _np(v) for k, v in ws.items()}
        if x.perm:
            ws = {k: v[_perm(x.perm)] for k, v in ws.items()}
        # Keras's momentum weighs the moving average, torch's the batch
        args = {"eps": float(m.eps), "momentum": float(f"{1 - m.momentum:.15g}")}
        return self.add("batchnorm", args, [x], where, ws, shape=shape, perm=x.perm, squeezed=x.squeezed)

    def pool(self, op, x: _V, k, s, opts, where, kind, shape) -> _V:
        x = self.as_map(x, where, kind)
        if opts.get("dilation", (1, 1)) != (1, 1):
            self.fail(where, kind, "pools with a dilation; netdsl's pooling has none")
        if opts.get("return_indices"):
            self.fail(where, kind, "returns indices; netdsl's pooling returns the pooled map only")
        if opts.get("divisor_override"):
            self.fail(where, kind, "divides by a fixed divisor (divisor_override); netdsl averages")
        h, w = x.shape[2], x.shape[3]
        ph, pw = opts["padding"]
        if opts["ceil_mode"]:
            floor = ((h + 2 * ph - k[0]) // s[0] + 1, (w + 2 * pw - k[1]) // s[1] + 1)
            if tuple(shape[2:]) != floor:
                self.fail(where, kind, "rounds its output size up (ceil_mode=True) where that changes it")
        pads = (ph, ph, pw, pw)
        if not any(pads):
            return self.add(op, {"size": k, "stride": s, "padding": "valid"}, [x], where, shape=shape)
        same = (*_same_pads(h, k[0], s[0]), *_same_pads(w, k[1], s[1]))
        exact_same = pads == same and (op == "maxpool" or not opts["count_include_pad"])
        if exact_same:
            return self.add(op, {"size": k, "stride": s, "padding": "same"}, [x], where, shape=shape)
        zeros_fine = op == "avgpool" and opts["count_include_pad"]
        if op == "maxpool" and self._nonnegative(x):
            zeros_fine = True  # padding a ReLU's output with 0 instead of -inf changes no maximum
        if not zeros_fine:
            why = (
                f"pads by {ph}x{pw}, which is not TF `same` here, and pads with -inf where netdsl's `pad` adds zeros"
                if op == "maxpool"
                else f"pads by {ph}x{pw} and leaves the padding out of the averages (count_include_pad=False), "
                "which is not TF `same` here"
            )
            self.fail(where, kind, why)
        padded = (*x.shape[:2], h + 2 * ph, w + 2 * pw)
        x = self.add("pad", {"top": ph, "bottom": ph, "left": pw, "right": pw}, [x], f"{where}_pad", shape=padded)
        return self.add(op, {"size": k, "stride": s, "padding": "valid"}, [x], where, shape=shape)

    def _nonnegative(self, x: _V) -> bool:
        by = {n.name: n for n in self.nodes}
        n = by.get(x.node)
        return n is not None and (n.op == "relu" or n.args.get("activation") == "relu")

    def adaptive(self, op, x: _V, size, where, kind, shape) -> _V:
        x = self.as_map(x, where, kind)
        oh, ow = _pair(size)
        h, w = x.shape[2], x.shape[3]
        oh, ow = oh or h, ow or w  # None keeps that side
        if (oh, ow) == (1, 1):
            return self.add(op, {}, [x], where, shape=shape, squeezed=True)
        if h % oh or w % ow:
            self.fail(where, kind, f"pools {h}x{w} to {oh}x{ow}, which is not a whole window; netdsl's pools have one")
        k = (h // oh, w // ow)
        pool = "avgpool" if op == "gap" else "maxpool"
        return self.add(pool, {"size": k, "stride": k, "padding": "valid"}, [x], where, shape=shape)

    def flatten(self, x: _V, where, kind, shape) -> _V:
        if x.squeezed or len(x.shape) == 2:
            return x._replace(squeezed=False, shape=shape)  # (N, C, 1, 1) -> (N, C): nothing to do
        c, h, w = (*x.shape[1:], 1) if len(x.shape) == 3 else x.shape[1:]  # (C, L) is (C, L, 1)
        perm = (c, h, w) if c != 1 and h * w != 1 else None
        return self.add("flatten", {}, [x], where, shape=shape, perm=perm)

    def upsample(self, x: _V, factor, mode, size, where, kind, shape) -> _V:
        x = self.as_map(x, where, kind)
        if mode != "nearest":
            self.fail(where, kind, f"upsamples with `{mode}`; netdsl's upsample is nearest")
        h, w = x.shape[2], x.shape[3]
        oh, ow = shape[2], shape[3]
        if oh % h or ow % w:
            self.fail(where, kind, f"scales {h}x{w} to {oh}x{ow}, not by whole factors")
        return self.add("upsample", {"size": (oh // h, ow // w)}, [x], where, shape=shape)

    def pad(self, x: _V, pads, value, mode, where, kind, shape, users: int = 0) -> _V:
        if mode != "constant":
            self.fail(where, kind, f"pads in `{mode}` mode; netdsl's `pad` adds zeros")
        if len(pads) == 2 and len(x.shape) == 3 and users == 1 and min(pads) >= 0 and self._pads_for_1d():
            return x._replace(shape=shape, pad1d=(*pads, value, x))  # TF `same` of the 1-D layer after it?
        if value not in (0, 0.0, None):
            self.fail(where, kind, f"pads with the value {value}; netdsl's `pad` adds zeros")
        if len(pads) != 4 or min(pads) < 0:
            self.fail(where, kind, f"pads {tuple(pads)}; netdsl pads height and width by whole pixels")
        x = self.as_map(x, where, kind)
        left, right, top, bottom = pads
        args = {"top": top, "bottom": bottom, "left": left, "right": right}
        v = self.add("pad", args, [x], where, shape=shape)
        if users == 1:  # a conv right after it may take it as its TF `same` padding
            self.pad_src[v.node] = (x, args)
        return v

    def softmax(self, cls, x: _V, dim, where, kind, functional) -> _V:
        rank = len(x.shape)  # over a whole permuted vector, the permutation carries through
        if dim is None or dim not in (1, 1 - rank):
            self.fail(where, kind, f"takes the softmax over dim {dim}; netdsl's is over the channels (dim 1)")
        op = "softmax" if cls is nn.Softmax else "log_softmax"
        return self.add(op, {}, [x], where, functional=functional, perm=x.perm, squeezed=x.squeezed)

    _ACTS = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SELU: "selu", nn.SiLU: "silu"}

    def activation(self, base, m, x: _V, where, kind, functional) -> _V:
        if base in self._ACTS:
            op, args = self._ACTS[base], {}
        elif base is nn.GELU:
            if m.approximate != "none":
                self.fail(where, kind, f"uses the `{m.approximate}` approximation; netdsl's gelu is exact (erf)")
            op, args = "gelu", {}
        elif base is nn.ELU:
            if m.alpha != 1.0:
                self.fail(where, kind, f"has alpha={m.alpha}; netdsl's elu has 1")
            op, args = "elu", {}
        elif base is nn.LeakyReLU:
            op, args = "leakyrelu", {"alpha": float(m.negative_slope)}
        else:  # pragma: no cover - _LEAVES and this table agree
            self.fail(where, kind, "no netdsl layer does what it does")
        return self.add(op, args, [x], where, functional=functional, perm=x.perm, squeezed=x.squeezed)


def _fn_name(t) -> str:
    if isinstance(t, str):
        return f"Tensor.{t}"
    mod = getattr(t, "__module__", "") or ""
    short = {"torch.nn.functional": "F", "_operator": "operator", "torch._C._nn": "F"}.get(mod, mod)
    return f"{short}.{getattr(t, '__name__', t)}" if short else str(getattr(t, "__name__", t))


def _perm(chw: tuple) -> np.ndarray:
    """netdsl's (H, W, C) position -> torch's (C, H, W) position of the same element."""
    c, h, w = chw
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()


# each: (reader, fx node, first tensor input, all tensor inputs, where, kind, shape) -> _V


def _act(op: str):
    def read(r, fxn, x, ts, where, kind, shape):
        if len(ts) != 1:
            r.fail(where, kind, "takes more than one tensor")
        args: dict = {}
        if op == "leakyrelu":
            b = _bind(fxn, ("input", "negative_slope", "inplace"), {"negative_slope": 0.01})
            args = {"alpha": float(b["negative_slope"])}
        if op == "gelu":
            if _bind(fxn, ("input", "approximate"), {"approximate": "none"})["approximate"] != "none":
                r.fail(where, kind, "uses the tanh approximation; netdsl's gelu is exact (erf)")
        if op == "elu":
            if _bind(fxn, ("input", "alpha", "inplace"), {"alpha": 1.0})["alpha"] != 1.0:
                r.fail(where, kind, "has alpha != 1; netdsl's elu has 1")
        return r.add(op, args, [x], where, functional=op != "leakyrelu", perm=x.perm, squeezed=x.squeezed)

    return read


def _softmax(cls):
    def read(r, fxn, x, ts, where, kind, shape):
        b = _bind(fxn, ("input", "dim"), {"dim": None})
        return r.softmax(cls, x, b["dim"], where, kind, True)

    return read


def _dropout(r, fxn, x, ts, where, kind, shape):
    names = ("input", "p", "train") if fxn.target is torch.dropout else ("input", "p", "training", "inplace")
    b = _bind(fxn, names, {"p": 0.5, names[2]: True})
    active = b[names[2]]
    if not (isinstance(active, (bool, int)) and not active):  # torch's default drops at inference too
        r.fail(
            where,
            kind,
            f"drops units at inference ({names[2]}={active!r}, torch's default); pass {names[2]}=self.training",
        )
    return r.add("dropout", {"rate": float(b["p"])}, [x], where, shape=shape, perm=x.perm, squeezed=x.squeezed)


def _pool_fn(op: str):
    def read(r, fxn, x, ts, where, kind, shape):
        names = ("input", "kernel_size", "stride", "padding")
        names += ("dilation", "ceil_mode", "return_indices") if op == "maxpool" else ("ceil_mode", "count_include_pad")
        b = _bind(fxn, names + (("divisor_override",) if op == "avgpool" else ()), {})
        k = _pair(b["kernel_size"])
        s = _pair(b.get("stride") or b["kernel_size"])
        opts = {"padding": _pair(b.get("padding", 0)), "ceil_mode": b.get("ceil_mode", False)}
        if op == "maxpool":
            opts.update(dilation=_pair(b.get("dilation", 1)), return_indices=b.get("return_indices", False))
        else:
            opts.update(count_include_pad=b.get("count_include_pad", True), divisor_override=b.get("divisor_override"))
        return r.pool(op, x, k, s, opts, where, kind, shape)

    return read


def _adaptive(op: str):
    def read(r, fxn, x, ts, where, kind, shape):
        return r.adaptive(op, x, _bind(fxn, ("input", "output_size"), {})["output_size"], where, kind, shape)

    return read


def _reshape(r, fxn, x, ts, where, kind, shape):
    """view/reshape/flatten/squeeze, told apart by the shapes they map between."""
    if tuple(shape) == tuple(x.shape):
        return x
    if len(shape) == 2 and shape[0] == x.shape[0] and int(np.prod(x.shape[1:])) == shape[1]:
        return r.flatten(x, where, kind, shape)
    if len(shape) == 4 and tuple(shape[2:]) == (1, 1) and len(x.shape) == 2 and shape[1] == x.shape[1]:
        return x._replace(squeezed=True, shape=shape)  # (N, C) -> (N, C, 1, 1)
    r.fail(where, kind, f"reshapes {tuple(x.shape)} to {tuple(shape)}; netdsl imports a reshape to (N, -1) only")


def _mean(r, fxn, x, ts, where, kind, shape):
    b = _bind(fxn, ("input", "dim", "keepdim"), {"dim": None, "keepdim": False})
    dims = b["dim"] if isinstance(b["dim"], (tuple, list)) else (b["dim"],)
    if len(x.shape) != 4 or sorted(d % 4 for d in dims if isinstance(d, int)) != [2, 3] or len(dims) != 2:
        r.fail(where, kind, f"averages over dims {b['dim']}; netdsl imports the mean over (2, 3) (gap)")
    x = r.as_map(x, where, kind)
    return r.add("gap", {}, [x], where, shape=shape, squeezed=bool(b["keepdim"]))


def _merge(op: str):
    def read(r, fxn, x, ts, where, kind, shape):
        if op == "add":
            b = _bind(fxn, ("input", "other"), {"alpha": 1})
            if b.get("alpha", 1) != 1 or len(fxn.args) + len(fxn.kwargs) != 2:
                r.fail(where, kind, "adds with a factor (alpha); netdsl's add sums")
            ins = [b["input"], b["other"]]
        elif op == "mul":
            b = _bind(fxn, ("input", "other"), {})
            if len(fxn.args) + len(fxn.kwargs) != 2:
                r.fail(where, kind, "is called with more than two arguments")
            ins = [b.get("input"), b.get("other")]
        else:
            b = _bind(fxn, ("tensors", "dim"), {"dim": 0})
            ins = list(b["tensors"])
            rank = len(shape)
            if b["dim"] not in (1, 1 - rank):
                r.fail(where, kind, f"joins on dim {b['dim']}; netdsl's concat joins the channels (dim 1)")
        vals = []
        for a in ins:
            if not isinstance(a, fx.Node) or not isinstance(r.env.get(a), _V):
                r.fail(where, kind, f"takes {a!r}, not a tensor computed from the input; netdsl's {op} joins tensors")
            vals.append(r.env[a])
        if any(v.perm for v in vals) and (op == "concat" or len({v.perm for v in vals}) != 1):
            r.fail(where, kind, f"{op}s flattened feature maps (torch's (C, H, W) order); netdsl's differs")
        if op == "mul" and any(len(v.shape) != len(shape) and not v.squeezed for v in vals):
            r.fail(where, kind, "multiplies tensors of different ranks; netdsl's mul needs one rank")
        if len(shape) == 4:
            vals = [r.as_map(v, where, kind) for v in vals]
        elif any(v.squeezed for v in vals):
            r.fail(where, kind, "joins pooled (N, C, 1, 1) maps")
        return r.add(op, {}, vals, where, shape=shape, perm=vals[0].perm)

    return read


def _upsample_fn(r, fxn, x, ts, where, kind, shape):
    b = _bind(fxn, ("input", "size", "scale_factor", "mode"), {"mode": "nearest"})
    return r.upsample(x, b.get("scale_factor"), b["mode"], b.get("size"), where, kind, shape)


def _pad_fn(r, fxn, x, ts, where, kind, shape):
    b = _bind(fxn, ("input", "pad", "mode", "value"), {"mode": "constant", "value": None})
    return r.pad(x, tuple(b["pad"]), b["value"], b["mode"], where, kind, shape, len(fxn.users))


def _identity(r, fxn, x, ts, where, kind, shape):
    return x


FUNCS: dict = {
    F.relu: _act("relu"), torch.relu: _act("relu"), F.relu_: _act("relu"), torch.relu_: _act("relu"),
    torch.sigmoid: _act("sigmoid"), F.sigmoid: _act("sigmoid"), torch.tanh: _act("tanh"), F.tanh: _act("tanh"),
    F.gelu: _act("gelu"), F.elu: _act("elu"), F.selu: _act("selu"), torch.selu: _act("selu"), F.silu: _act("silu"),
    F.leaky_relu: _act("leakyrelu"),
    F.softmax: _softmax(nn.Softmax), torch.softmax: _softmax(nn.Softmax),
    F.log_softmax: _softmax(nn.LogSoftmax), torch.log_softmax: _softmax(nn.LogSoftmax),
    F.dropout: _dropout, torch.dropout: _dropout,
    F.max_pool2d: _pool_fn("maxpool"), torch.max_pool2d: _pool_fn("maxpool"),
    F.avg_pool2d: _pool_fn("avgpool"), torch._C._nn.avg_pool2d: _pool_fn("avgpool"),
    F.adaptive_avg_pool2d: _adaptive("gap"), F.adaptive_max_pool2d: _adaptive("gmp"),
    torch.flatten: _reshape, torch.reshape: _reshape, torch.squeeze: _reshape,
    operator.add: _merge("add"), operator.iadd: _merge("add"), torch.add: _merge("add"),
    operator.mul: _merge("mul"), operator.imul: _merge("mul"), torch.mul: _merge("mul"),
    torch.cat: _merge("concat"), torch.concat: _merge("concat"),
    F.interpolate: _upsample_fn, F.pad: _pad_fn, torch.mean: _mean,
    torch.clone: _identity,
}  # fmt: skip

METHODS: dict = {
    "relu": _act("relu"), "relu_": _act("relu"), "sigmoid": _act("sigmoid"), "tanh": _act("tanh"),
    "softmax": _softmax(nn.Softmax), "log_softmax": _softmax(nn.LogSoftmax),
    "view": _reshape, "reshape": _reshape, "flatten": _reshape, "squeeze": _reshape, "unsqueeze": _reshape,
    "contiguous": _identity, "clone": _identity, "mean": _mean,
    "add": _merge("add"), "add_": _merge("add"), "__add__": _merge("add"),
    "mul": _merge("mul"), "mul_": _merge("mul"), "__mul__": _merge("mul"),
}  # fmt: skip
