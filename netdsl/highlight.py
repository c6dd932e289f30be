"""Syntax highlighting: a Pygments lexer and the TextMate grammar, from one token table.

The lexer is registered under the ``pygments.lexers`` entry point (aliases ``netdsl``
and ``net``, files ``*.net``), so ```` ```netdsl ```` blocks highlight in Sphinx,
MkDocs, Jupyter and ``pygmentize``.  ``editors/netdsl.tmLanguage.json`` (VS Code,
GitHub-style highlighters) is generated from the same regular expressions by
:func:`tmlanguage` (``python -m netdsl.highlight > editors/netdsl.tmLanguage.json``);
a test holds the file to that output and runs both highlighters over the examples.

Layer names are not listed: the first word of a statement is the layer (or def call),
whatever layers the op table holds, so plugin and future layers highlight too.
"""

from __future__ import annotations

import json

# ---- the token table (shared by both highlighters) -----------------------------------------

KEYWORDS = ("input", "from", "add", "concat", "mul", "residual", "repeat", "let", "train", "data")
# bare words the language reads as values: activations, paddings, booleans, upsample's mode
WORD_VALUES = (
    "linear", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "gelu", "elu", "selu", "silu", "leakyrelu",
    "valid", "same", "true", "false", "nearest",
)  # fmt: skip

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
COMMENT = r"#[^\n]*"
SIZE = (
    r"[0-9]+(?:x[0-9]+)*/[0-9]+(?:x[0-9]+)*(?![\w.])|[0-9]+(?:x[0-9]+)+(?![\w.])"
    # per-channel values, `mean=0.4914x0.4822x0.4465` (the grammar's VALUES)
    r"|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:x(?:[0-9]+\.?[0-9]*|\.[0-9]+))+(?![\w.])"
)
NUMBER = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?(?![\w.])"
KEYWORD = r"(?i:" + "|".join(KEYWORDS) + r")\b"
WORD_VALUE = r"\b(?i:" + "|".join(WORD_VALUES) + r")\b"
KWARG = rf"({NAME})([ \t]*)(=)"
SIZE_X = r"\bx\b"  # `c x 3`
OPERATOR = r"//|[-+*/=]"
PUNCT = r"[(),:]"
# a statement starts at the beginning of a line or after `;`, `{`, `|`, `}`
START = r"(?:^|(?<=[;{|}]))[ \t]*"

# category -> (Pygments token name, TextMate scope)
CATEGORIES = {
    "comment": ("Comment.Single", "comment.line.number-sign.netdsl"),
    "keyword": ("Keyword", "keyword.control.netdsl"),
    "label": ("Name.Label", "entity.name.tag.label.netdsl"),
    "function": ("Name.Function", "entity.name.function.netdsl"),
    "attribute": ("Name.Attribute", "variable.parameter.netdsl"),
    "size": ("Literal.Number", "constant.numeric.size.netdsl"),
    "number": ("Literal.Number", "constant.numeric.netdsl"),
    "constant": ("Name.Constant", "constant.language.netdsl"),
    "operator": ("Operator", "keyword.operator.netdsl"),
    "punctuation": ("Punctuation", "punctuation.netdsl"),
    "name": ("Name.Variable", "variable.other.netdsl"),
}


def _pygments_lexer():
    from pygments.lexer import RegexLexer, bygroups, default
    from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, Whitespace

    args = [
        (r"\n", Whitespace, "#pop"),
        (r"[;{|}]", Punctuation, "#pop"),
        (r"[ \t\r\f]+", Whitespace),
        (COMMENT, Comment.Single),
        (KWARG, bygroups(Name.Attribute, Whitespace, Operator)),
        (SIZE, Number),
        (NUMBER, Number),
        (SIZE_X, Operator),
        (WORD_VALUE, Name.Constant),
        (NAME, Name.Variable),
        (OPERATOR, Operator),
        (PUNCT, Punctuation),
    ]

    class NetdslLexer(RegexLexer):
        """netdsl, the neural-network description language (https://github.com/netdsl)."""

        name = "netdsl"
        aliases = ["netdsl", "net"]
        filenames = ["*.net"]
        mimetypes = ["text/x-netdsl"]
        url = "https://pypi.org/project/netdsl/"

        tokens = {
            "root": [
                (r"\s+", Whitespace),
                (COMMENT, Comment.Single),
                (r"[;{|}]", Punctuation),
                (rf"({NAME})([ \t]*)(:)", bygroups(Name.Label, Whitespace, Punctuation)),
                (rf"(?i:(def))([ \t]+)({NAME})", bygroups(Keyword, Whitespace, Name.Function), "args"),
                (rf"(?i:(let))([ \t]+)({NAME})", bygroups(Keyword, Whitespace, Name.Variable), "args"),
                (KEYWORD, Keyword, "args"),
                (NAME, Name.Function, "args"),
                default("args"),
            ],
            "args": args,
        }

    return NetdslLexer


def __getattr__(name: str):
    """``NetdslLexer`` is built on first use: importing this module needs no Pygments."""
    if name == "NetdslLexer":
        cls = _pygments_lexer()
        globals()["NetdslLexer"] = cls
        return cls
    raise AttributeError(name)


# ---- TextMate -------------------------------------------------------------------------------------


def _scope(category: str) -> str:
    return CATEGORIES[category][1]


def tmlanguage() -> dict:
    """The TextMate grammar: match rules only (no begin/end), tried in order at each position."""

    def caps(*cats):
        return {str(i): {"name": _scope(c)} for i, c in enumerate(cats, 1) if c}

    # groups: label, `:`, `def`, the def's name, `let`, its name, a statement keyword, a layer or def call
    keywords = "|".join(KEYWORDS)
    statement = (
        START
        + rf"(?:({NAME})[ \t]*(:)[ \t]*)?"
        + rf"(?:(?i:(def))[ \t]+({NAME})|(?i:(let))[ \t]+({NAME})|(?i:({keywords}))\b|({NAME}))"
    )
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "netdsl",
        "scopeName": "source.netdsl",
        "fileTypes": ["net"],
        "comment": "Generated by `python -m netdsl.highlight` from netdsl/highlight.py; do not edit.",
        "patterns": [
            {"name": _scope("comment"), "match": COMMENT},
            {
                "match": statement,
                "captures": caps(
                    "label", "punctuation", "keyword", "function", "keyword", "name", "keyword", "function"
                ),
            },
            {"match": KWARG, "captures": caps("attribute", None, "operator")},
            {"name": _scope("size"), "match": SIZE},
            {"name": _scope("number"), "match": NUMBER},
            {"name": _scope("operator"), "match": SIZE_X},
            {"name": _scope("constant"), "match": WORD_VALUE},
            {"name": _scope("name"), "match": NAME},
            {"name": _scope("operator"), "match": OPERATOR},
            {"name": _scope("punctuation"), "match": PUNCT + "|[;{|}]"},
        ],
    }


def tmlanguage_json() -> str:
    return json.dumps(tmlanguage(), indent=2) + "\n"


if __name__ == "__main__":  # pragma: no cover - the generator of editors/netdsl.tmLanguage.json
    import sys

    sys.stdout.write(tmlanguage_json())
