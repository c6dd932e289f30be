"""Every error code netdsl raises, with its one-line meaning: the one registry.

``NetdslError`` accepts only a code listed here, ``netdsl explain CODE`` prints an entry, and
``tests/test_codes.py`` holds this table, the codes raised in the source and the table in
``docs/language.md`` to one another (every code raised is here and documented, and vice versa).
The ``example`` of a spec error is a whole spec that fails with that code under
``netdsl check -``; API, data and training errors have none.
"""

from __future__ import annotations

from typing import NamedTuple


class Code(NamedTuple):
    meaning: str
    example: str | None = None  # as the docs' table shows it
    example_is_spec: bool = True  # False: the example is a file, a command or a flag


CODES: dict[str, Code] = {
    "E001": Code(
        "a character or token the lexer cannot read: glued or malformed sizes/numbers, quotes, `×`", "conv 6x5relu"
    ),
    "E002": Code("a syntax error: unexpected token, unclosed `{`, stray `}`, `=` outside `let`/keywords", "x = 3"),
    "E003": Code("not text: a non-UTF-8 byte or a NUL byte", "a file containing byte `0xFF`", False),
    "E004": Code(
        "a limit exceeded: source size, nesting depth (of the text, or of blocks and def calls while expanding), expanded layers or statements ([Limits](#limits))",
        "repeat 1000 { repeat 1000 { relu } }",
    ),
    "E005": Code("the file cannot be read", "`netdsl check missing.net`", False),
    "E101": Code("unknown layer or def, a def used without `()`, a layer called with `()`", "cnv 6x5"),
    "E102": Code("unknown keyword argument for that layer", "conv filters=6 kernal=5"),
    "E103": Code(
        "a bad argument value: wrong kind, out of range, given twice, misplaced word, bad `input`", "dropout 1.5"
    ),
    "E104": Code("a required argument is missing", "conv kernel=3"),
    "E105": Code("an undefined name (not a variable, parameter or word)", "conv filters=w kernel=3"),
    "E106": Code(
        "a bad free parameter: unused, set by `let`, or not a number/word", "`netdsl check -D w=3 lenet5.net`", False
    ),
    "E107": Code("a name defined twice (label or def), or a def named like a layer/keyword", "e: relu; e: relu"),
    "E108": Code("`from`/`add`/`concat` names no existing node", "concat e1"),
    "E109": Code(
        "an empty or malformed block: empty body, fewer than two paths, empty path, `identity` with arguments",
        "residual { }",
    ),
    "E110": Code("a recursive def call", "def f() { f() }; f()"),
    "E111": Code(
        "a bad def call or header: too many/unknown/repeated/missing arguments, a parameter twice",
        "def f(c) { relu }; f()",
    ),
    "E112": Code("arithmetic error: division by zero, arithmetic on a word, result too large", "let a = 1/0"),
    "E113": Code("a repeat count that is not a whole number from 1 to 100,000", "repeat 0 { relu }"),
    "E114": Code(
        "a statement in the wrong place: `input` after a layer or twice; `input`, `def`, `train`, `data` inside a block",
        "relu; input 28x28x1",
    ),
    "E115": Code(
        "a bad `train` or `data` statement: a value out of range, a key of another optimizer or schedule ([`train`](#train))",
        "train adamax",
    ),
    "E140": Code(
        "channels not divisible into groups: `groupnorm G`, or `conv ... groups=G` on its input",
        "input 8x8x3; groupnorm 2",
    ),
    "E141": Code("`mul` over inputs whose shapes differ (other than on axes of size 1)", "e: conv 8x3; mul input"),
    "E142": Code("a 1-D layer (conv1d, maxpool1d, avgpool1d) on something other than an LxC sequence", "conv1d 4x3"),
    "E143": Code(
        "a plugin layer failed: its shape rule, weights, MACs or a builder raised or returned nonsense (the message names the plugin)"
    ),
    "E144": Code("a plugin layer's shape rule refused its input (its own message)"),
    "E145": Code("a plugin layer does not provide the backend asked for (torch, keras, their generated source, onnx)"),
    "E201": Code("`dense` on a feature map", "dense 10"),
    "E202": Code(
        "a layer that needs an HxWxC feature map got a vector (conv, pooling, gap/gmp, upsample)", "flatten; gap"
    ),
    "E203": Code("a kernel or window larger than its (valid-padded) input", "conv 2x30"),
    "E204": Code(
        "`add` (or `residual`, `add { }`) over inputs of different shapes", "conv 8x3 same; residual { conv 16x3 same }"
    ),
    "E205": Code("`concat` over inputs whose non-channel axes differ", "e: conv 8x3 same; maxpool 2; concat e"),
    "E207": Code("`reshape` to a different element count", "reshape 7x7x7"),
    "E208": Code("a dead branch: a node that does not lead to the output", "a: conv 2x1; conv 2x1; from a"),
    "E209": Code(
        "a tensor or a layer too large for any framework: a dimension over 2,147,483,647, more than 2^40 elements per sample, or more than 2^40 parameters in one layer",
        "input 2147483647; dense 2147483647",
    ),
    "E301": Code("a weights file lacks a tensor the net needs"),
    "E302": Code("a tensor in a weights file has the wrong shape, is not floating point, or holds NaN/inf"),
    "E303": Code("a weights file cannot be read or written, or is not a netdsl safetensors file"),
    "E304": Code("a weights file has a tensor the net does not"),
    "E305": Code("`save_weights`/`load_weights` got something that is neither a torch module nor a Keras model"),
    "E401": Code("an unknown backend name"),
    "E402": Code("the backend's framework is not installed (the hint names the extra to install)"),
    "E410": Code(
        "an export setting netdsl does not write: an opset outside 13–25, a layout other than nchw/nhwc, an unknown format"
    ),
    "E411": Code(
        "the exported model cannot be written: the output is the spec itself or the weights file, a directory, unwritable (no space, no such directory), or (as a default output) a file netdsl did not write"
    ),
    "E412": Code("a net whose weights do not fit in one ONNX file (over 2 GiB, protobuf's limit)"),
    "E450": Code("`--init-from` names a directory that holds no weights.safetensors"),
    "E451": Code(
        "a bad `--map OLD=NEW`: not two names, a name renamed twice, two tensors mapped to one, an OLD the weights do not have or a NEW the net does not have"
    ),
    "E461": Code(
        "`normalize` given a different number of values than its input has channels",
        "input 8x8x3; normalize mean=0.5x0.5 std=1",
    ),
    "E462": Code("`randomcrop` larger than its input plus twice its padding", "input 8x8x1; randomcrop 10x10"),
    "E501": Code("an unknown data set name"),
    "E502": Code("a data file that is missing, truncated, foreign or inconsistent (the message names the file)"),
    "E503": Code("a download that failed or did not match its sha256"),
    "E504": Code("no data found anywhere (the message lists where netdsl looked)"),
    "E611": Code(
        "an image folder that cannot be used: no class folders or only one, an empty class folder, a test class unknown to train/, no images to test on (the message names the folder)"
    ),
    "E612": Code(
        "an image file that cannot be decoded: corrupt, truncated or not an image (the message names the file)"
    ),
    "E613": Code("an image whose size is not the net's input (the message names the first one); --resize scales them"),
    "E614": Code(
        "numpy data (an .npz or arrays given to `netdsl.train`) that cannot be used: missing arrays, wrong rank or dtype, NaN, labels out of range, one class (the message names the array and index)"
    ),
    "E615": Code("an image given to `netdsl predict` that cannot be read or does not fit the net"),
    "E616": Code(
        "`netdsl evaluate`/`predict` got neither a complete run directory nor a spec with its weights, or could not write its output"
    ),
    "E617": Code("a CIFAR file that is missing, truncated or foreign (the message names the file)"),
    "E618": Code("reading images (an image folder, `netdsl predict`) needs Pillow, which is not installed"),
    "E601": Code(
        "a bad training setting from a flag or `netdsl.train()`: the same rules as the `train` line's ([`train`](#train))"
    ),
    "E602": Code("a net that does not fit the data set (input not the samples' shape, output not one score per class)"),
    "E603": Code(
        "a run directory that cannot be resumed, that holds another spec, that holds files netdsl did not write, that another `netdsl train` is using, or whose checkpoint is damaged or tampered with (the message gives the reason; nothing is discarded)"
    ),
    "E604": Code(
        "training diverged: the loss (or the weights) became NaN or infinite; the message names the epoch and the first bad step"
    ),
    "E605": Code(
        "a file of the run directory could not be written (a full disk, a file-size limit); the message names it, and the last complete checkpoint is kept"
    ),
    "E606": Code(
        "nothing to train: every weight of the net is frozen, or it has none (batchnorm's moving statistics are not trained)"
    ),
    "E607": Code(
        "not enough memory to build or train the model (its weights alone exceed the machine's memory, or an allocation failed)"
    ),
    # scaling (netdsl.scale): E63x
    "E630": Code("a bad speed setting from `netdsl.train()`: precision, threads, compile, channels_last, distribute"),
    "E631": Code(
        "a precision the device cannot train in (fp16 needs CUDA; bf16 needs a CPU or GPU torch supports it on)"
    ),
    "E632": Code(
        "a speed or scaling option the backend does not have (`--nproc` and `--channels-last` are torch's, `--distribute` keras's), or `--nproc` with the spec on standard input"
    ),
    "E633": Code(
        "the distributed environment is unusable (RANK outside WORLD_SIZE, a LOCAL_RANK with no GPU; a TF_CONFIG that is not an object with a cluster of host:port lists and a task within it)"
    ),
    "E634": Code(
        "a distributed run stopped: a rank died or lost the others; the last complete checkpoint resumes with `--resume`"
    ),
    "E403": Code(
        "a requested device that is not a device name, that the framework cannot train on (`meta`), or that this machine lacks (`cuda` or keras's `gpu` without a GPU, `cuda:3` with one)"
    ),
    # netdsl import (netdsl/importers/)
    "E701": Code(
        "`netdsl import` cannot load its source: no such file or module, no such name, an error while importing or building it, not an nn.Module or a Keras model"
    ),
    "E702": Code(
        "a layer or operation of the imported model that netdsl has no equivalent for, a value outside the limits a spec's checker takes (a negative leaky slope, eps=0), or weights that are NaN, infinite or on the meta device (the message names its module path, its type, why, and what is supported)"
    ),
    "E703": Code(
        "torch.fx cannot trace the model: control flow that depends on the data, Python that a trace cannot follow, or the module's forward raising (an exception, sys.exit) while traced (the message names the module)"
    ),
    "E704": Code(
        "the imported model's structure does not fit a spec: not one input and one output, an input shape it cannot take, shared (reused) layers"
    ),
    "E705": Code("the spec or weights written for an imported model do not reproduce it (a bug in the importer)"),
    # editors (netdsl fmt)
    "E801": Code(
        "`netdsl fmt --oneline` refused: the spec has comments, which one line cannot keep (`--force` drops them)"
    ),
    "E802": Code(
        "`netdsl fmt` cannot write the formatted file back (a read-only directory, not a regular file, a full disk); the file is left as it was"
    ),
    "E803": Code("`netdsl lsp` without its packages: install the extra `netdsl[lsp]` (pygls, lsprotocol)"),
    "E804": Code(
        "`netdsl fmt` refused its own output: the formatted text would not mean what the spec means (a bug in the formatter; the file is left as it was)"
    ),
    # search spaces and `netdsl sweep` (docs/language.md#search-spaces)
    "E901": Code("a search space where the value cannot vary: the input shape", "input int(8, 28); flatten; dense 10"),
    "E902": Code(
        "a malformed search space: an empty or too long `choice()`, an option listed twice, `int`/`float`/`log` without two bounds",
        "dense choice()",
    ),
    "E903": Code("search-space bounds the wrong way round", "dense int(64, 16)"),
    "E904": Code("`log` with a bound at or below 0", "dense 8; dropout log(0, 0.5)"),
    "E905": Code(
        "search-space bounds that are not numbers written out (names, words), not whole for `int`, or too large",
        "dense int(1.5, 4)",
    ),
    "E906": Code("a search space inside another", "dense choice(int(1, 4), 8)"),
    "E907": Code(
        "a `float`/`log` search space whose values are not whole, where a whole number is needed",
        "flatten; dense float(1, 8)",
    ),
    "E910": Code(
        "nothing to sweep: a spec without a search space, or every candidate drawn was pruned before training (the message gives the commonest reasons)"
    ),
    "E911": Code(
        "the sweep's study cannot be used: a storage URL that cannot be opened (a SQLite path that is a directory, another program's database), no study to `--resume`, a study of another spec, space or objectives, a `--storage memory` study rerun on its sweep directory, a sweep directory that cannot be made or written, or that holds files netdsl sweep did not write"
    ),
    "E912": Code("`netdsl sweep` needs Optuna, which is not installed (`pip install 'netdsl[sweep]'`)"),
    "E914": Code(
        "a candidate that does not fit the spec's search space: a dimension it lacks, or a value outside one (a study of another space)"
    ),
}


def meaning(code: str) -> str:
    """The one-line meaning of ``code`` (KeyError for an unknown one)."""
    return CODES[code].meaning
