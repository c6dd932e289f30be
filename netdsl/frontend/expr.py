"""Values: variables, parameters and arithmetic over the syntax tree's expressions.

Evaluation is iterative (post-order with an explicit stack): `1+1+...+1` with
100,000 terms is an expression that deep and must not exhaust Python's recursion
limit.  Every step counts as work in the expansion budget.
"""

from __future__ import annotations

from typing import Any

from .. import ops
from . import syntax as s
from .cost import Budget
from .diagnostics import Reporter, suggest
from .recipe_stmt import TRAIN_WORDS
from .scope import Scope

MAX_NUMBER = 2**63
MISSING = object()  # a value that could not be computed (the error is reported)


def bind_hint(name: str) -> str:
    return f"define it with `let {name} = ...`, or bind it: `-D {name}=VALUE` on the command line, `netdsl.parse(text, {name}=VALUE)` in Python"


def numeric(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Evaluator:
    def __init__(self, reporter: Reporter, budget: Budget, params: dict[str, Any]):
        self.report = reporter
        self.budget = budget
        self.params = params
        self.used_params: set[str] = set()

    def lookup(self, name: str, scope: Scope):
        v = scope.find("vars", name)
        if v is not None:
            return v
        if name in self.params:
            self.used_params.add(name)
            return self.params[name]
        return MISSING

    def value(self, node, scope: Scope, conv=None):
        """A keyword or call argument: a literal size (``3x3``) or an expression.

        Where the argument is a choice (``padding=same``), an undefined bare word is
        passed on as a word, so the error lists the choices instead of "not defined".
        """
        if isinstance(node, s.Size):  # `kernel=3x1` (only literal sizes reach here)
            return tuple(d.value for d in node.dims)
        if getattr(conv, "choices", None) and isinstance(node, s.Name):
            if node.name.lower() in conv.choices:  # a word wins over a variable, as in shorthand
                return node.name
            v = self.lookup(node.name, scope)
            return node.name if v is MISSING else v
        v = self.eval(node, scope)
        return MISSING if v is None else v

    def eval(self, node, scope: Scope):
        """The value of an expression; None after reporting an error."""
        stack: list = [(node, False)]
        values: list = []
        while stack:
            self.budget.work(1, node.span, "steps of work")  # `repeat 100000 { let a = 1+...+1 }`
            n, ready = stack.pop()
            match n:
                case s.Num(value=v):
                    values.append(v)
                case s.Name():
                    values.append(self._var(n, scope))
                case _ if not ready:
                    stack.append((n, True))
                    if isinstance(n, s.Neg):
                        stack.append((n.operand, False))
                    else:
                        stack.extend(((n.right, False), (n.left, False)))
                case s.Neg():
                    values.append(self._apply("neg", None, values.pop(), n))
                case s.BinOp(op=op):
                    b = values.pop()
                    values.append(self._apply(op, values.pop(), b, n))
        return values[0]

    def _var(self, node: s.Name, scope: Scope):
        v = self.lookup(node.name, scope)
        if v is not MISSING:
            return v
        if node.name.lower() in ops.WORDS or node.name.lower() in TRAIN_WORDS:
            return node.name
        hint = None
        if not self.report.reported_at(node.span):
            close = suggest(node.name, sorted(scope.visible("vars") | set(self.params)))
            hint = (f"{close} Or " if close else "") + bind_hint(node.name)
        self.report.error("E105", f"`{node.name}` is not defined", node.span, hint=hint)
        return None

    def _apply(self, op: str, a, b, node):
        if b is None or (op != "neg" and a is None):
            return None  # an operand already failed (and was reported)
        for v in (b,) if op == "neg" else (a, b):
            if not numeric(v):
                what = "negate" if op == "neg" else "do arithmetic with"
                self.report.error("E112", f"cannot {what} `{v}`", node.span)
                return None
        try:
            if op == "neg":
                r = -b
            elif op == "+":
                r = a + b
            elif op == "-":
                r = a - b
            elif op == "*":
                r = a * b
            elif op == "/":  # exact: 64/4 is the whole number 16
                r = a // b if isinstance(a, int) and isinstance(b, int) and a % b == 0 else a / b
            else:
                r = a // b
        except ZeroDivisionError:
            self.report.error("E112", "division by zero", node.span)
            return None
        except OverflowError:
            r = float("inf")
        if isinstance(r, float) and (r != r or abs(r) == float("inf")) or abs(r) > MAX_NUMBER:
            self.report.error("E112", "the result is too large", node.span)
            return None
        return r
