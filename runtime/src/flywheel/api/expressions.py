"""The small, safe expression language of derived features.

An expression is parsed with Python's own grammar and then checked against a whitelist:
column names, literals, arithmetic, comparisons, `and`/`or`/`not` and a fixed set of
functions. Nothing is ever evaluated as Python; the data plane compiles the checked tree
to vectorised Arrow compute calls, the same code for training and serving.

>>> sorted(columns("log1p(amount) / (tenure_days + 1)"))
['amount', 'tenure_days']
"""

from __future__ import annotations

import ast

# name -> (min args, max args)
FUNCTIONS: dict[str, tuple[int, int]] = {
    "abs": (1, 1),
    "log": (1, 1),
    "log1p": (1, 1),
    "exp": (1, 1),
    "sqrt": (1, 1),
    "floor": (1, 1),
    "ceil": (1, 1),
    "round": (1, 2),
    "clip": (3, 3),
    "coalesce": (2, 8),
    "is_null": (1, 1),
    "if_else": (3, 3),
    "lower": (1, 1),
    "upper": (1, 1),
    "length": (1, 1),
    "hour": (1, 1),
    "day_of_week": (1, 1),
    "cast_float": (1, 1),
}

_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod, ast.Pow)
_UNARY = (ast.USub, ast.UAdd, ast.Not)
_COMPARE = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
MAX_LENGTH = 1024
MAX_NODES = 256


class ExpressionError(ValueError):
    """An expression outside the allowed language; the message says what to use instead."""


def parse(expr: str) -> ast.expr:
    """The checked syntax tree of an expression."""
    if len(expr) > MAX_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"expression {expr!r} is not valid syntax: {exc.msg}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ExpressionError(f"expression has more than {MAX_NODES} parts; split it")
    _check(tree.body)
    return tree.body


def columns(expr: str) -> set[str]:
    """The column names an expression reads."""
    tree = parse(expr)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called}


def _check(node: ast.expr) -> None:
    match node:
        case ast.Constant(value=value):
            if not isinstance(value, int | float | str | bool) and value is not None:
                raise ExpressionError(f"literal {value!r} is not a number, string or bool")
        case ast.Name():
            pass
        case ast.BinOp(left=left, op=op, right=right):
            if not isinstance(op, _BINARY):
                raise ExpressionError(
                    f"operator {type(op).__name__} is not allowed; use + - * / % **"
                )
            _check(left)
            _check(right)
        case ast.UnaryOp(op=op, operand=operand):
            if not isinstance(op, _UNARY):
                raise ExpressionError(f"operator {type(op).__name__} is not allowed")
            _check(operand)
        case ast.BoolOp(values=values):
            for v in values:
                _check(v)
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            if len(ops) != 1 or not isinstance(ops[0], _COMPARE):
                raise ExpressionError("use one comparison at a time: == != < <= > >=")
            _check(left)
            _check(comparators[0])
        case ast.IfExp(test=test, body=body, orelse=orelse):
            for v in (test, body, orelse):
                _check(v)
        case ast.Call(func=ast.Name(id=fname), args=args, keywords=keywords):
            if fname not in FUNCTIONS:
                allowed = ", ".join(sorted(FUNCTIONS))
                raise ExpressionError(f"function {fname!r} is not allowed; use one of: {allowed}")
            low, high = FUNCTIONS[fname]
            if keywords or not low <= len(args) <= high:
                raise ExpressionError(
                    f"function {fname!r} takes {low}"
                    + (f" to {high}" if high != low else "")
                    + " positional arguments"
                )
            for a in args:
                _check(a)
        case ast.Call():
            allowed = ", ".join(sorted(FUNCTIONS))
            raise ExpressionError(f"only these functions may be called, by name: {allowed}")
        case _:
            raise ExpressionError(
                f"{type(node).__name__} is not allowed in an expression; use column names, "
                "literals, arithmetic, comparisons, and/or/not and the listed functions"
            )
