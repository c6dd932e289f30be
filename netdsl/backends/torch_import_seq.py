"""The torch reader's 1-D layers (Conv1d, MaxPool1d, AvgPool1d on (N, C, L)) and norms (LayerNorm, GroupNorm).

A mixin of :class:`.torch_layers.Layers` (``self`` is the reader).  netdsl's 1-D layers have no
pad of their own, so torch's 1-D padding imports only where it is TF `same` (an ``F.pad`` right
before a Conv1d or MaxPool1d included); torch's LayerNorm imports only where it normalises what
Keras's ``LayerNormalization(axis=-1)`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from .torch_import_layers import _V


def _np(t):
    """A weight as numpy: bfloat16 and float16 (which numpy cannot take from torch) widened to
    float32, which holds each of their values exactly."""
    import torch

    t = t.detach().cpu()
    return (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy()


def _one(v) -> int:
    return v[0] if isinstance(v, (tuple, list)) else v


def _same_pads(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's `same` padding: (before, after), the odd one after."""
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


class SeqNorms:
    def conv1d(self, m, x: _V, where, kind, shape) -> _V:
        if m.groups != 1:
            self.fail(where, kind, f"is a grouped convolution (groups={m.groups}); netdsl's conv1d has no groups")
        if m.padding_mode != "zeros":
            self.fail(where, kind, f"pads with `{m.padding_mode}`; netdsl pads with zeros only")
        (k,), (s,), (d,) = m.kernel_size, m.stride, m.dilation
        x, padded = self._unpad1d(x, (0.0, None), k, s, d, where, kind)
        x = self.as_seq(x, where, kind)
        if s > 1 and d > 1:
            self.fail(where, kind, "combines a stride > 1 with a dilation > 1 (netdsl and Keras refuse it)")
        padding = self._pad1d(m.padding, x.shape[2], k, s, d, where, kind)
        if padded:
            if padding != "valid":
                self.fail(where, kind, "pads a sequence F.pad has padded already; netdsl has no 1-D pad")
            padding = "same"
        weights = {"kernel": _np(m.weight).transpose(2, 1, 0)}  # OIK -> KIO
        if m.bias is not None:
            weights["bias"] = _np(m.bias)
        args = {"filters": m.out_channels, "kernel": k, "stride": s, "padding": padding, "dilation": d}
        args["bias"] = m.bias is not None
        return self.add("conv1d", args, [x], where, weights, shape=shape)

    def _pad1d(self, padding, n, k, s, d, where, kind) -> str:
        """`valid` or `same` for torch's 1-D padding; netdsl has no 1-D pad for anything else."""
        if padding in ("same", "valid"):
            pads = _same_pads(n, k, s, d) if padding == "same" else (0, 0)
        else:
            p = padding[0] if isinstance(padding, tuple) else padding
            pads = (p, p)
        if not any(pads):
            return "valid"
        if pads == _same_pads(n, k, s, d):
            return "same"
        self.fail(where, kind, f"pads by {pads[0]}, which is not TF `same` here; netdsl has no 1-D pad")
        return "valid"  # unreachable

    def _pads_for_1d(self) -> bool:
        """Whether the F.pad being read feeds a 1-D conv or max pool (which may take it as TF `same`)."""
        (user,) = self.cur.users
        if user.op != "call_module":
            return False
        m = self.gm.get_submodule(user.target)
        return type(m) in (nn.Conv1d, nn.MaxPool1d)

    def _unpad1d(self, x: _V, values: tuple, k, s, d, where, kind) -> tuple[_V, bool]:
        """The sequence before an F.pad when its pads are TF `same` for this layer, and True; else a refusal."""
        if not x.pad1d:
            return x, False
        left, right, value, src = x.pad1d
        if value not in values:
            self.fail(where, kind, f"reads a sequence F.pad padded with {value}; netdsl's `same` pads with zeros")
        if (left, right) != _same_pads(src.shape[2], k, s, d):
            self.fail(
                where, kind, f"reads a sequence F.pad padded by {(left, right)}, not TF `same`; netdsl has no 1-D pad"
            )
        return src, True

    def pool1d(self, base, m, x: _V, where, kind, shape) -> _V:
        k = _one(m.kernel_size)
        s = _one(m.stride if m.stride is not None else m.kernel_size)
        if kind == "AvgPool1dSame":  # netdsl's own: TF same padding, averages over real elements
            x = self.as_seq(x, where, kind)
            return self.add("avgpool1d", {"size": k, "stride": s, "padding": "same"}, [x], where, shape=shape)
        if base is nn.MaxPool1d and (_one(m.dilation) != 1 or m.return_indices):
            self.fail(where, kind, "pools with a dilation or returns indices; netdsl's maxpool1d does neither")
        # F.pad with -inf, as netdsl's own code writes; with zeros only after a ReLU (no maximum changes)
        values = (float("-inf"), 0.0, None) if x.pad1d and self._nonnegative(x.pad1d[3]) else (float("-inf"),)
        x, padded = self._unpad1d(x, values, k, s, 1, where, kind)
        x = self.as_seq(x, where, kind)
        if padded:
            if _one(m.padding) or shape[2] != -(-x.shape[2] // s):
                self.fail(where, kind, "pools a sequence F.pad padded to other than TF `same`; netdsl has no 1-D pad")
            return self.add("maxpool1d", {"size": k, "stride": s, "padding": "same"}, [x], where, shape=shape)
        n, p = x.shape[2], _one(m.padding)
        if m.ceil_mode and shape[2] != (n + 2 * p - k) // s + 1:
            self.fail(where, kind, "rounds its output size up (ceil_mode=True) where that changes it")
        padding = "valid"
        if p:
            op = "maxpool1d" if base is nn.MaxPool1d else "avgpool1d"
            if (p, p) != _same_pads(n, k, s) or (op == "avgpool1d" and m.count_include_pad):
                self.fail(where, kind, f"pads by {p}, which is not TF `same` here (netdsl has no 1-D pad)")
            padding = "same"
        op = "maxpool1d" if base is nn.MaxPool1d else "avgpool1d"
        return self.add(op, {"size": k, "stride": s, "padding": padding}, [x], where, shape=shape)

    def layernorm(self, m, x: _V, where, kind, shape) -> _V:
        if not m.elementwise_affine or m.weight is None or m.bias is None:
            self.fail(where, kind, "has no learned scale or shift; netdsl's layernorm has both")
        if len(m.normalized_shape) != 1:
            self.fail(where, kind, f"normalises over {len(m.normalized_shape)} dims; netdsl's layernorm over one")
        ws = {"gamma": _np(m.weight), "beta": _np(m.bias)}
        args = {"eps": float(m.eps)}
        if kind == "ChannelLayerNorm":  # netdsl's own: over dim 1 of (N, C, ...), Keras's axis=-1
            if x.perm or (len(x.shape) not in (3, 4) and not x.squeezed):
                self.fail(where, kind, f"normalises the channels of a tensor of shape {tuple(x.shape[1:])}")
            x = self.as_map(x, where, kind) if len(x.shape) == 4 else x
            return self.add("layernorm", args, [x], where, ws, shape=shape)
        if len(x.shape) != 2 or x.squeezed:
            self.fail(
                where,
                kind,
                f"normalises the last dim of a tensor of shape {tuple(x.shape[1:])}, torch's W or L, where "
                "netdsl's layernorm (Keras's axis=-1) normalises the channels; only a LayerNorm of a vector imports",
            )
        if x.perm:  # the same statistics over the vector in any order: gamma and beta follow it
            from .torch_import_layers import _perm

            ws = {k: v[_perm(x.perm)] for k, v in ws.items()}
        return self.add("layernorm", args, [x], where, ws, shape=shape, perm=x.perm)

    def groupnorm(self, m, x: _V, where, kind, shape) -> _V:
        if not m.affine:
            self.fail(where, kind, "has no learned scale and shift (affine=False); netdsl's groupnorm has them")
        if x.perm:
            self.fail(where, kind, "normalises a vector flattened in torch's (C, H, W) order; its groups differ")
        if len(x.shape) == 4 or x.squeezed:
            x = self.as_map(x, where, kind)
        ws = {"gamma": _np(m.weight), "beta": _np(m.bias)}
        args = {"groups": m.num_groups, "eps": float(m.eps)}
        return self.add("groupnorm", args, [x], where, ws, shape=shape)
