"""The training recipe's one table: every ``train``/``data`` key, its type, range and default.

The checker (a spec's ``train``/``data`` lines), the trainer (:func:`netdsl.training.resolve`,
which also takes ``netdsl train``'s flags and ``netdsl.train(**settings)``), the CLI's
``train --help`` and the table in docs/language.md all read this module, so a setting
has one rule wherever it is written.  It imports no framework (it is on the check path).

The API, for any caller::

    normalise(key, raw) -> value | Problem     one setting: the normalised value, or
                                               Problem(message, hint) saying what is wrong
    conflicts(settings) -> [(key, Problem)]    what the keys given together break
                                               (momentum with adam, gamma without a schedule)
    parse_flag(key, text) -> value | Problem   the same for a command-line string
    KEYS[key].choices                          the words a key takes (None: not a word key)

Optimizers and their defaults are Keras 3's (``keras.optimizers.*``); a learning-rate
schedule is a rate per training step, the same formula in both backends (:func:`netdsl.recipe.lr_at`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

MAX_INT = 2**31 - 1  # as a layer size: nothing larger is a real epoch count or batch
MAX_SEED = 2**32 - 1  # Keras (numpy's legacy seeding) takes seeds below 2**32
MAX_LR = 1e6
MAX_DIGITS = 30  # a flag's number: as many digits as a spec may write

# Keras 3's defaults for each optimizer: its learning rate and the hyperparameters netdsl uses.
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.01, "momentum": 0.0, "nesterov": False},
    "adam": {"lr": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "adamw": {"lr": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "weight_decay": 0.004},
    "rmsprop": {"lr": 0.001, "rho": 0.9, "epsilon": 1e-7},
    "adagrad": {"lr": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
    "adadelta": {"lr": 0.001, "rho": 0.95, "epsilon": 1e-7},
    "nadam": {"lr": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
}
# Each schedule's own keys and their defaults (gamma: torch's StepLR default; 0.96: the rate
# in Keras' ExponentialDecay example; plateau: Keras' ReduceLROnPlateau defaults).
SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"gamma": 0.1, "step_size": 1},
    "exponential": {"gamma": 0.96},
    "cosine": {"min_lr": 0.0},
    "plateau": {"gamma": 0.1, "lr_patience": 10, "min_lr": 0.0},
}
PLATEAU_MIN_DELTA = 1e-4  # Keras' ReduceLROnPlateau: an improvement is a fall of more than this
DATASETS = {  # name or alias -> the data set
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fashion": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar100": "cifar100",
    "cifar-100": "cifar100",
    "cifar_100": "cifar100",
}
LOSSES = ("sparse_categorical_crossentropy",)
METRICS = ("accuracy",)


class Problem(NamedTuple):
    """What is wrong with a setting: a message and an optional hint."""

    message: str
    hint: str | None = None


class Key(NamedTuple):
    """One setting.  ``kind``: int, real, word or bool; ``lo``/``hi`` the range (``open``: which
    ends are excluded, "lo", "hi" or both); ``default`` None means "see ``default_text``"."""

    name: str
    kind: str
    help: str
    lo: float | None = None
    hi: float | None = None
    open: str = ""
    choices: tuple | None = None
    default: Any = None
    default_text: str = ""
    flag: bool = True  # a `netdsl train --flag`
    spec: bool = True  # a key of the `train` statement

    def default_str(self) -> str:
        if self.default_text:
            return self.default_text
        return str(self.default).lower() if isinstance(self.default, (str, bool)) else _num(self.default)

    def range_text(self) -> str:
        if self.kind == "word":
            return ", ".join(f"`{c}`" for c in self.choices or ())
        if self.kind == "bool":
            return "`true` or `false`"
        whole = "a whole number" if self.kind == "int" else "a number"
        lo = "" if self.lo is None else f"{_num(self.lo)} {'<' if 'lo' in self.open else '≤'} "
        hi = "" if self.hi is None else f" {'<' if 'hi' in self.open else '≤'} {_num(self.hi)}"
        return f"{whole}, {lo}{self.name}{hi}"


def _num(v: float) -> str:
    if isinstance(v, int) or float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:g}"


_OPT_NAMES = tuple(OPTIMIZERS)
KEYS: dict[str, Key] = {
    k.name: k
    for k in [
        Key("optimizer", "word", "the optimizer, with Keras' defaults", choices=_OPT_NAMES, default="adam"),
        Key("lr", "real", "the learning rate", 0, MAX_LR, "lo", default_text="the optimizer's Keras default"),
        Key("epochs", "int", "passes over the training set", 1, MAX_INT, default=1),
        Key("batch", "int", "images per step", 1, MAX_INT, default=32),
        Key("validation", "real", "the last fraction of the training set, held out", 0, 1, "hi", default=0.1),
        Key("seed", "int", "seed of the initial weights, shuffling and dropout", 0, MAX_SEED, default=0),
        Key("loss", "word", "the loss (scored as the output asks)", choices=LOSSES, default=LOSSES[0], flag=False),
        Key("metrics", "word", "the metric", choices=METRICS, default=METRICS[0], flag=False),
        Key("momentum", "real", "sgd's momentum", 0, 1, default=0.0),
        Key("nesterov", "bool", "sgd's Nesterov momentum (needs momentum > 0)", default=False),
        Key(
            "weight_decay",
            "real",
            "decoupled weight decay: w -= lr * weight_decay * w each step",
            0,
            1,
            default_text="0.004 for adamw, else 0",
        ),
        Key("clip_norm", "real", "clip the gradients' global norm to this", 0, MAX_LR, "lo", default_text="none"),
        Key(
            "label_smoothing",
            "real",
            "mix this much of the uniform distribution into the labels",
            0,
            1,
            "hi",
            default=0.0,
        ),
        Key("patience", "int", "early stopping: epochs without a better val_loss", 1, MAX_INT, default_text="none"),
        Key("schedule", "word", "the learning-rate schedule", choices=tuple(SCHEDULES), default="constant"),
        Key(
            "gamma",
            "real",
            "step, exponential, plateau: the factor",
            0,
            1,
            "lo hi",
            default_text="0.1 (exponential 0.96)",
        ),
        Key("step_size", "int", "step: epochs between two decays", 1, MAX_INT, default_text="1"),
        Key("min_lr", "real", "cosine, plateau: the lowest rate", 0, MAX_LR, default_text="0"),
        Key(
            "lr_patience",
            "int",
            "plateau: epochs without a better val_loss before a decay",
            1,
            MAX_INT,
            default_text="10",
        ),
        Key("warmup", "int", "epochs of linear warmup before the schedule", 0, MAX_INT, default=0),
        Key(
            "dataset",
            "word",
            "the data set (the `data` statement)",
            choices=tuple(DATASETS),
            default="mnist",
            spec=False,
        ),
        Key(
            "device", "word", "cpu, cuda, cuda:1, mps, xpu, gpu (keras) ...", default_text="the best found", spec=False
        ),
    ]
}
TRAIN_KEYS = tuple(k for k, key in KEYS.items() if key.spec)
# words a `train` value may be (never looked up as variables)
WORDS = frozenset(w for key in KEYS.values() if key.choices for w in key.choices) | {"true", "false"}
_OPTIMIZER_KEYS = ("momentum", "nesterov")  # sgd's own
_SCHEDULE_KEYS = ("gamma", "step_size", "min_lr", "lr_patience")
_DEVICE_KINDS = ("cpu", "cuda", "gpu", "mps", "xpu")


def normalise(key: str, raw: Any) -> Any:
    """``raw`` checked against ``key``'s rule: the normalised value, or a :class:`Problem`."""
    k = KEYS.get(key)
    if k is None:
        return unknown(key)
    if k.name == "device":
        return _device(raw)
    if k.kind == "word":
        if isinstance(raw, str) and raw.lower() in k.choices:
            low = raw.lower()
            return DATASETS[low] if key == "dataset" else low
        from .errors import did_you_mean

        hint = did_you_mean(raw, k.choices) if isinstance(raw, str) else None
        if key == "dataset":  # the close alias names its data set: `fashon` -> fashion-mnist
            hint = hint and f"did you mean `{DATASETS[hint.split('`')[1]]}`?"
            return Problem(f"unknown data set {_show(raw)} (known: mnist, fashion-mnist, cifar10, cifar100)", hint)
        return Problem(f"{key} must be one of {', '.join(k.choices)}; got {_show(raw)}", hint)
    if k.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        return Problem(f"{key} must be true or false, got {_show(raw)}")
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        what = "a whole number" if k.kind == "int" else "a number"
        return Problem(f"{key} must be {what}, got {_show(raw)}")
    if k.kind == "int":
        if isinstance(raw, float) and not raw.is_integer():
            return Problem(f"{key} must be a whole number, got {_show(raw)}")
        value: Any = int(raw)
    else:
        try:
            value = float(raw)
        except OverflowError:  # an int with hundreds of digits
            return Problem(f"{key} is too large (the limit is {_num(k.hi)})")
    if k.kind == "int":
        if value < k.lo:
            return Problem(f"{key} must be at least {_num(k.lo)}, got {_show(raw)}")
        if value > k.hi:
            return Problem(f"{key} = {_show(raw)} is too large (the limit is {_num(k.hi)})")
        return value
    lo_bad = value < k.lo or ("lo" in k.open and value == k.lo)
    if value != value or lo_bad or value > k.hi or ("hi" in k.open and value == k.hi):
        lb, rb = "(" if "lo" in k.open else "[", ")" if "hi" in k.open else "]"
        return Problem(f"{key} must be in {lb}{k.lo:g}, {k.hi:g}{rb}, got {_show(raw)}")
    return value


def unknown(key: str) -> Problem:
    """The problem of a key that ``train`` does not have."""
    from .errors import did_you_mean

    return Problem(
        f"`train` has no setting `{key}` (its settings: {', '.join(TRAIN_KEYS)})", did_you_mean(key, TRAIN_KEYS)
    )


def _device(raw: Any) -> Any:
    """A device name's form (the backend checks that this machine has it)."""
    text = raw.strip() if isinstance(raw, str) else None
    if text:
        low = text.lower()
        kind, _, index = low.lstrip("/").partition(":")
        if kind in _DEVICE_KINDS and (not index or (index.isdigit() and len(index) <= 4)) and len(text) <= 16:
            return low  # kinds are case-insensitive, as layer words are: CPU, Cuda:0
    return Problem(
        f"`{raw}` is not a device" if text else f"device must be a name, got {_show(raw)}",
        "use cpu, cuda, cuda:1, mps or xpu (torch); cpu, gpu or gpu:1 (keras)",
    )


def parse_flag(key: str, text: str) -> Any:
    """A command-line string for ``key`` as the value it spells (a number for a number key), or a
    :class:`Problem` when it spells none; :func:`normalise` then holds it to the key's range."""
    k = KEYS[key]
    t = text.strip()
    if k.kind not in ("int", "real"):
        return t
    what = "a whole number" if k.kind == "int" else "a number"
    if sum(c.isdigit() for c in t) > MAX_DIGITS or len(t) > 2 * MAX_DIGITS:
        return Problem(f"{key} must be {what} of at most {MAX_DIGITS} digits, got {len(t)} characters")
    if not t.isascii() or "_" in t:
        return Problem(f"{key} must be {what}, got `{text}`")
    try:
        return int(t, 10)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return Problem(f"{key} must be {what}, got `{text}`")


def flags() -> list[Key]:
    """The keys ``netdsl train`` takes as ``--flags`` (``--weight-decay`` for weight_decay)."""
    return [k for k in KEYS.values() if k.flag]


def flag_help(k: Key) -> str:
    """A flag's ``--help`` text, from the table."""
    values = "" if k.kind == "word" else f"{k.range_text()}; "
    return f"{k.help} ({values}default: {k.default_str()})".replace("%", "%%")


def conflicts(cfg: dict, flagged: Iterable[str] = ()) -> list[tuple[str, Problem]]:
    """What the settings in ``cfg`` (normalised; absent keys unset) break together.

    ``flagged``: the keys given as ``netdsl train`` flags, whose hints name flags, not the spec's words.
    """
    out, flagged = [], set(flagged)
    opt = cfg.get("optimizer", "adam")
    for key in _OPTIMIZER_KEYS:
        if cfg.get(key) and opt != "sgd":  # momentum=0 or --no-nesterov ask for nothing
            hint = (
                f"add --optimizer sgd, or leave out --{key.replace('_', '-')}"
                if key in flagged
                else "write `train sgd ...`"
            )
            out.append((key, Problem(f"{key} is a setting of sgd, not of {opt}", hint)))
    if cfg.get("nesterov") and opt == "sgd" and not cfg.get("momentum"):
        hint = "add --momentum 0.9" if "nesterov" in flagged else "add momentum=0.9"
        out.append(("nesterov", Problem("nesterov needs a momentum above 0", hint)))
    schedule = cfg.get("schedule", "constant")
    for key in _SCHEDULE_KEYS:
        if key in cfg and key not in SCHEDULES[schedule]:
            users = [s for s, keys in SCHEDULES.items() if key in keys]
            out.append((key, Problem(f"{key} is a setting of schedule={' or '.join(users)}, not of {schedule}")))
    if "min_lr" in cfg and "lr" in cfg and cfg["min_lr"] >= cfg["lr"]:
        out.append(("min_lr", Problem(f"min_lr must be below lr ({_num(cfg['lr'])}), got {_num(cfg['min_lr'])}")))
    if cfg.get("warmup") and "epochs" in cfg and cfg["warmup"] >= cfg["epochs"]:
        out.append(
            ("warmup", Problem(f"warmup ({cfg['warmup']} epochs) must be shorter than epochs ({cfg['epochs']})"))
        )
    return out


def defaults(optimizer: str, schedule: str) -> dict:
    """The value every unset recipe key takes for this optimizer and schedule."""
    o = OPTIMIZERS[optimizer]
    return {
        "lr": o["lr"],
        "momentum": o.get("momentum", 0.0) if optimizer == "sgd" else None,
        "nesterov": o.get("nesterov", False) if optimizer == "sgd" else None,
        "weight_decay": o.get("weight_decay", 0.0),
        **{k: SCHEDULES[schedule].get(k) for k in _SCHEDULE_KEYS},
    }


def _show(v: Any) -> str:
    if isinstance(v, str):
        return f"`{v}`"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "x".join(map(str, v))
    return repr(v) if not isinstance(v, int) or len(str(v)) <= 40 else f"a {len(str(abs(v)))}-digit number"


def markdown_table() -> str:
    """The train-key table of docs/language.md (a test holds the two together)."""
    rows = ["| key | values | default | meaning |", "|---|---|---|---|"]
    for k in KEYS.values():
        if not k.spec:
            continue
        default = k.default_str()
        default = f"`{default}`" if isinstance(k.default, (str, bool)) and not k.default_text else default
        rows.append(f"| `{k.name}` | {k.range_text()} | {default} | {k.help} |")
    return "\n".join(rows)
