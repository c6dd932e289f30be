"""A Keras 3 model, read from its functional config, as netdsl layers (:class:`.spec.Node`).

``model.get_config()`` lists the layers with their inbound nodes (a Sequential model is a
chain); each layer becomes at most one netdsl node, with the layer's own weights, since
netdsl's canonical layout is Keras's.  Activations stay fused where the model fused them
(``Conv2D(activation="relu")``) and separate where it used a layer.
"""

from __future__ import annotations

from .spec import Node, Unsupported

SUPPORTED = (
    "InputLayer, Conv2D (channels_last; groups, dilation_rate), DepthwiseConv2D, SeparableConv2D, Dense, "
    "BatchNormalization (last axis, center and scale), LayerNormalization and GroupNormalization (last axis, "
    "center and scale), Conv1D, MaxPooling1D, AveragePooling1D (on an (L, C) input), "
    "MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, Flatten, Dropout, "
    "UpSampling2D (nearest), Reshape, ZeroPadding2D, Add, Multiply, Concatenate (last axis), Rescaling, "
    "Activation, ReLU, Softmax, "
    "ELU, LeakyReLU, Identity; activations linear, relu, sigmoid, tanh, softmax, log_softmax, gelu, elu, selu, "
    "silu/swish, leaky_relu"
)

_ACTIVATIONS = {
    "linear": "linear", "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax",
    "log_softmax": "log_softmax", "gelu": "gelu", "elu": "elu", "selu": "selu", "silu": "silu", "swish": "silu",
    "leaky_relu": "leakyrelu",
}  # fmt: skip


def _fail(name: str, cls: str, why: str, code: str = "E702"):
    raise Unsupported(code, f"`{name}` ({cls}): {why}", hint=f"netdsl imports {SUPPORTED}")


def _history(obj, out: list) -> list:
    """The (layer, node, tensor) of every Keras tensor in an inbound node's arguments."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            out.append(tuple(obj["config"]["keras_history"]))
        else:
            for v in obj.values():
                _history(v, out)
    elif isinstance(obj, (list, tuple)):
        if len(obj) == 3 and isinstance(obj[0], str) and all(isinstance(x, int) for x in obj[1:]):
            out.append(tuple(obj))  # an older config's [layer, node, tensor]
        else:
            for v in obj:
                _history(v, out)
    return out


def _pair(v) -> tuple:
    return (v, v) if isinstance(v, int) else tuple(v)


def _activation(name: str, cls: str, act) -> str:
    if act is None:
        return "linear"
    if isinstance(act, dict):
        act = act.get("config", {}).get("name") or act.get("class_name")
    if not isinstance(act, str) or act not in _ACTIVATIONS:
        _fail(name, cls, f"uses the activation {act!r}, which netdsl does not have")
    return _ACTIVATIONS[act]


def read(model) -> tuple[list[Node], str, tuple, dict]:
    """(nodes, the output node, the input shape, {"params": Keras's count})."""
    import warnings

    with warnings.catch_warnings():  # get_weights trips numpy 2's copy= deprecation in some Keras versions
        warnings.simplefilter("ignore", DeprecationWarning)
        return _read(model)


def _read(model) -> tuple[list[Node], str, tuple, dict]:
    import keras

    if not isinstance(model, keras.Model):
        from ..errors import NetdslError

        raise NetdslError("E701", f"expected a keras.Model, got {type(model).__name__}")
    try:
        config = model.get_config()
    except Exception as e:  # a subclassed model without get_config
        raise Unsupported(
            "E704",
            f"the model `{model.name}` ({type(model).__name__}) has no layer config ({e}); "
            "netdsl imports Sequential and functional models",
        ) from None
    layers = config.get("layers")
    if not isinstance(layers, list):
        raise Unsupported(
            "E704", f"the model `{model.name}` ({type(model).__name__}) is not a Sequential or functional model"
        )
    sequential = isinstance(model, keras.Sequential)
    shape = _input_shape(model, layers, sequential)
    nodes: list[Node] = []
    ref: dict[str, str] = {}  # Keras layer name -> netdsl node (or "input")
    prev = "input"
    for entry in layers:
        cls, cfg = entry["class_name"], entry.get("config", {})
        name = cfg.get("name") or entry.get("name") or cls
        if cls == "InputLayer":
            ref[name] = "input"
            continue
        if sequential:
            ins = [prev]
        else:
            inbound = entry.get("inbound_nodes") or []
            if len(inbound) != 1:
                raise Unsupported(
                    "E704", f"`{name}` ({cls}) is called {len(inbound)} times: netdsl has no shared layers"
                )
            hist = _history(inbound[0], [])
            if not hist:
                _fail(name, cls, "has no input tensor")
            ins = []
            for layer_name, _index, tensor_index in hist:
                if layer_name not in ref or tensor_index != 0:
                    _fail(name, cls, f"reads `{layer_name}`, which is not a layer netdsl imported")
                ins.append(ref[layer_name])
        layer = model.get_layer(name)
        node = _node(layer, cls, cfg, name, ins)
        if node is None:  # Identity
            ref[name] = prev = ins[0]
            continue
        nodes.append(node)
        ref[name] = prev = node.name
    if sequential:
        out = prev
    else:
        outs = config.get("output_layers")
        outs = _history(outs, [])
        if len(outs) != 1:
            raise Unsupported("E704", f"the model `{model.name}` has {len(outs)} outputs; a netdsl net has one")
        out = ref[outs[0][0]]
    if out == "input":
        raise Unsupported("E704", f"the model `{model.name}` returns its input unchanged: there is no layer to import")
    return nodes, out, shape, {"params": int(model.count_params())}


def _input_shape(model, layers, sequential) -> tuple:
    try:
        shape = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else None
        count = len(model.inputs)
    except (AttributeError, ValueError):  # an unbuilt Sequential
        shape, count = None, 0
    if count > 1:
        raise Unsupported("E704", f"the model `{model.name}` has {count} inputs; a netdsl net has one")
    if shape is None or len(shape) not in (1, 2, 3) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise Unsupported(
            "E704",
            f"the model `{model.name}` has no fixed input shape ({shape}); netdsl needs HxWxC, LxC or N",
            hint="build it on keras.Input((H, W, C)) (or (L, C), or (N,)) before saving",
        )
    return shape


def _node(layer, cls: str, c: dict, name: str, ins: list) -> Node | None:
    def node(op, args=None, weights=()):
        ws = dict(zip(weights, layer.get_weights(), strict=True)) if weights else {}
        return Node(f"keras:{name}", op, args or {}, ins, name, ws)

    if c.get("data_format", "channels_last") != "channels_last":
        _fail(name, cls, "is channels_first; netdsl is channels last")
    merge = cls in ("Add", "Concatenate", "Multiply")
    if len(ins) != 1 and not merge:
        _fail(name, cls, f"takes {len(ins)} inputs")
    if cls in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv1D"):
        return _conv(node, cls, c, name)
    if cls == "Dense":
        try:
            rank = len(layer.input.shape)
        except (AttributeError, ValueError):
            rank = 2
        if rank != 2:
            _fail(name, cls, "is applied to a tensor of rank > 2; netdsl's dense takes a vector (flatten it first)")
        args = {"units": c["units"], "activation": _activation(name, cls, c.get("activation")), "bias": c["use_bias"]}
        return node("dense", args, ("kernel", "bias") if args["bias"] else ("kernel",))
    if cls == "BatchNormalization":
        axis = c.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if axis not in (-1, 3, 1) or (axis == 1 and _rank(layer) != 2) or (axis == 3 and _rank(layer) != 4):
            _fail(name, cls, f"normalises axis {c.get('axis')}; netdsl's batchnorm normalises the last axis")
        if not (c.get("center", True) and c.get("scale", True)):
            _fail(name, cls, "has no learned shift or scale (center/scale False); netdsl's batchnorm has both")
        args = {"eps": float(c["epsilon"]), "momentum": float(c["momentum"])}
        return node("batchnorm", args, ("gamma", "beta", "moving_mean", "moving_variance"))
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        size = _pair(c["pool_size"])
        stride = _pair(c["strides"]) if c.get("strides") is not None else size
        op = "maxpool" if cls == "MaxPooling2D" else "avgpool"
        return node(op, {"size": size, "stride": stride, "padding": c["padding"]})
    if cls in ("MaxPooling1D", "AveragePooling1D"):
        size = _one(c["pool_size"])
        stride = _one(c["strides"]) if c.get("strides") is not None else size
        op = "maxpool1d" if cls == "MaxPooling1D" else "avgpool1d"
        return node(op, {"size": size, "stride": stride, "padding": c["padding"]})
    if cls in ("LayerNormalization", "GroupNormalization"):
        return _norm(node, layer, cls, c, name)
    if cls == "Rescaling":
        scale, offset = c.get("scale"), c.get("offset", 0.0)
        if not all(isinstance(v, (int, float)) for v in (scale, offset)):
            _fail(name, cls, "rescales by a value per channel; netdsl's rescale takes one scale and one offset")
        return node("rescale", {"scale": float(scale), "offset": float(offset)})
    if cls == "Normalization":
        _fail(name, cls, "holds its mean and variance as weights, which netdsl's `normalize` has as arguments; "
              "remove it and write `normalize mean=... std=...` in the spec")  # fmt: skip
    if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        if c.get("keepdims"):
            _fail(name, cls, "keeps the pooled axes (keepdims=True); follow it with netdsl's gap and a reshape")
        return node("gap" if cls == "GlobalAveragePooling2D" else "gmp")
    if cls == "Flatten":
        return node("flatten")
    if cls == "Dropout":
        if c.get("noise_shape") is not None:
            _fail(name, cls, "drops with a noise_shape; netdsl's dropout drops single values")
        return node("dropout", {"rate": float(c["rate"])})
    if cls == "UpSampling2D":
        if c.get("interpolation", "nearest") != "nearest":
            _fail(name, cls, f"interpolates `{c['interpolation']}`; netdsl's upsample is nearest")
        return node("upsample", {"size": _pair(c["size"])})
    if cls == "Reshape":
        target = tuple(c["target_shape"])
        if len(target) not in (1, 3) or any(not isinstance(d, int) or d < 1 for d in target):
            _fail(name, cls, f"reshapes to {target}; netdsl reshapes to N or HxWxC")
        return node("reshape", {"shape": target})
    if cls == "ZeroPadding2D":
        (t, b), (lf, r) = c["padding"]
        return node("pad", {"top": t, "bottom": b, "left": lf, "right": r})
    if cls == "Add":
        return node("add")
    if cls == "Multiply":
        return node("mul")
    if cls == "Concatenate":
        if c.get("axis", -1) not in (-1, _rank(layer) - 1):
            _fail(name, cls, f"joins on axis {c.get('axis')}; netdsl's concat joins the last axis")
        return node("concat")
    if cls == "Activation":
        act = _activation(name, cls, c.get("activation"))
        if act == "leakyrelu":
            return node("leakyrelu", {"alpha": 0.2})  # Keras's leaky_relu function
        return node(act)
    if cls == "ReLU":
        if c.get("max_value") is not None or c.get("negative_slope", 0) or c.get("threshold", 0):
            _fail(name, cls, "has a max_value, a negative slope or a threshold; netdsl's relu has none")
        return node("relu")
    if cls == "Softmax":
        if c.get("axis", -1) not in (-1, _rank(layer) - 1):
            _fail(name, cls, f"takes the softmax over axis {c.get('axis')}; netdsl's is over the last axis")
        return node("softmax")
    if cls == "ELU":
        if c.get("alpha", 1.0) != 1.0:
            _fail(name, cls, f"has alpha={c['alpha']}; netdsl's elu has 1")
        return node("elu")
    if cls == "LeakyReLU":
        return node("leakyrelu", {"alpha": float(c.get("negative_slope", c.get("alpha", 0.3)))})
    if cls == "Identity":
        return None
    if cls in ("Functional", "Sequential", "Model"):
        _fail(name, cls, "is a model inside the model; netdsl imports one level of layers (flatten it first)")
    _fail(name, cls, "no netdsl layer does what it does")
    return None  # unreachable: _fail raises


def _rank(layer) -> int:
    try:
        return len(layer.input.shape)
    except (AttributeError, ValueError):
        return -1


def _one(v) -> int:
    return v[0] if isinstance(v, (list, tuple)) else v


def _conv(node, cls: str, c: dict, name: str) -> Node:
    """Conv2D, DepthwiseConv2D, SeparableConv2D and Conv1D: one argument set, the layer's own weights."""
    if c["padding"] not in ("valid", "same"):
        _fail(name, cls, f"has padding `{c['padding']}`; netdsl's is valid or same")
    one = cls == "Conv1D"
    size = _one if one else _pair
    args = {
        "kernel": size(c["kernel_size"]), "stride": size(c["strides"]), "padding": c["padding"],
        "dilation": size(c.get("dilation_rate", 1)), "activation": _activation(name, cls, c.get("activation")),
        "bias": c.get("use_bias", True),
    }  # fmt: skip
    bias = ("bias",) if args["bias"] else ()
    if cls == "DepthwiseConv2D":
        args["multiplier"] = c.get("depth_multiplier", 1)
        return node("dwconv", args, ("kernel", *bias))
    args["filters"] = c["filters"]
    if cls == "SeparableConv2D":
        args["multiplier"] = c.get("depth_multiplier", 1)
        return node("sepconv", args, ("depthwise_kernel", "pointwise_kernel", *bias))
    if c.get("groups", 1) != 1:
        if one:
            _fail(name, cls, f"is a grouped convolution (groups={c['groups']}); netdsl's conv1d has no groups")
        args["groups"] = c["groups"]
    return node("conv1d" if one else "conv", args, ("kernel", *bias))


def _norm(node, layer, cls: str, c: dict, name: str) -> Node:
    axis = c.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if axis not in (-1, _rank(layer) - 1):
        _fail(name, cls, f"normalises axis {axis}; netdsl's {cls[:5].lower()}norm normalises the last axis")
    if not (c.get("center", True) and c.get("scale", True)):
        _fail(name, cls, "has no learned shift or scale (center/scale False); netdsl's has both")
    if c.get("rms_scaling"):
        _fail(name, cls, "scales by the root mean square (rms_scaling=True); netdsl's layernorm centres first")
    args = {"eps": float(c["epsilon"])}
    if cls == "GroupNormalization":
        args["groups"] = c["groups"]
    return node("layernorm" if cls == "LayerNormalization" else "groupnorm", args, ("gamma", "beta"))
