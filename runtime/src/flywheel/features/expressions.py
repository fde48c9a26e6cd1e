"""Compiling the checked expression tree of `flywheel.api.expressions` to Arrow compute.

Nothing is evaluated as Python: each node of the whitelisted tree maps to one vectorised
`pyarrow.compute` call over whole columns. Arithmetic follows Python: `/` is true
division (ints become floats), `%` takes the sign of the divisor.

>>> import pyarrow as pa
>>> compile_expression("a / 2 + 1")(pa.table({"a": [1, 4]})).to_pylist()
[1.5, 3.0]
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from flywheel.api import expressions

Compiled = Callable[[Any], Any]  # pa.Table -> pa.Array of the table's length

_FLOAT = pa.float64()


def compile_expression(text: str) -> Compiled:
    tree = expressions.parse(text)
    check_literals(tree)

    def evaluate(table: Any) -> Any:
        value = _eval(tree, table)
        if isinstance(value, pa.Scalar):  # a constant expression: one value per row
            return pa.array([value.as_py()] * table.num_rows, type=value.type)
        if isinstance(value, pa.ChunkedArray):
            return value.combine_chunks()
        return value

    return evaluate


def check_literals(tree: ast.expr) -> None:
    """What Arrow cannot take, refused before any row is read: integer literals past
    int64, infinite float literals (1e400), and a `round` whose digits are not a literal.

    >>> check_literals(expressions.parse("round(x, y)"))
    Traceback (most recent call last):
    ...
    flywheel.api.expressions.ExpressionError: round(x, n): n must be a whole number, as 2
    """
    for node in ast.walk(tree):
        match node:
            case ast.Constant(value=bool()):
                pass
            case ast.Constant(value=int(value)) if not -(2**63) <= value < 2**63:
                raise expressions.ExpressionError(
                    f"the literal {value} does not fit a 64-bit integer"
                )
            case ast.Constant(value=float(value)) if value != value or abs(value) == float("inf"):
                raise expressions.ExpressionError("a number literal overflows a 64-bit float")
            case ast.Call(func=ast.Name(id="round"), args=[_, digits]) if not _whole(digits):
                raise expressions.ExpressionError("round(x, n): n must be a whole number, as 2")


def _whole(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int)
        and not isinstance(node.value, bool)
        and abs(node.value) <= 1000
    )


def _float(x: Any) -> Any:
    if pa.types.is_floating(x.type):
        return x
    return pc.cast(x, _FLOAT)


def _mod(a: Any, b: Any) -> Any:
    a, b = _float(a), _float(b)
    return pc.subtract(a, pc.multiply(b, pc.floor(pc.divide(a, b))))


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: pc.add,
    ast.Sub: pc.subtract,
    ast.Mult: pc.multiply,
    ast.Div: lambda a, b: pc.divide(_float(a), _float(b)),
    ast.Mod: _mod,
    ast.Pow: lambda a, b: pc.power(_float(a), _float(b)),
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: pc.equal,
    ast.NotEq: pc.not_equal,
    ast.Lt: pc.less,
    ast.LtE: pc.less_equal,
    ast.Gt: pc.greater,
    ast.GtE: pc.greater_equal,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": pc.abs,
    "log": lambda x: pc.ln(_float(x)),
    "log1p": lambda x: pc.log1p(_float(x)),
    "exp": lambda x: pc.exp(_float(x)),
    "sqrt": lambda x: pc.sqrt(_float(x)),
    "floor": pc.floor,
    "ceil": pc.ceil,
    "round": lambda x, n=None: pc.round(x, ndigits=0 if n is None else n.as_py()),
    "clip": lambda x, lo, hi: pc.min_element_wise(
        pc.max_element_wise(x, lo, skip_nulls=False), hi, skip_nulls=False
    ),
    "coalesce": pc.coalesce,
    "is_null": pc.is_null,
    "if_else": pc.if_else,
    "lower": pc.utf8_lower,
    "upper": pc.utf8_upper,
    "length": pc.utf8_length,
    "hour": pc.hour,
    "day_of_week": pc.day_of_week,
    "cast_float": _float,
}


def _eval(node: ast.expr, table: Any) -> Any:
    match node:
        case ast.Constant(value=value):
            return pa.scalar(value)
        case ast.Name(id=name):
            if name not in table.column_names:
                raise KeyError(f"expression reads column {name!r}, which the source lacks")
            return table.column(name)
        case ast.BinOp(left=left, op=op, right=right):
            return _BINARY[type(op)](_eval(left, table), _eval(right, table))
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return pc.negate(_eval(operand, table))
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return _eval(operand, table)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return pc.invert(_eval(operand, table))
        case ast.BoolOp(op=op, values=values):
            combine = pc.and_kleene if isinstance(op, ast.And) else pc.or_kleene
            result = _eval(values[0], table)
            for v in values[1:]:
                result = combine(result, _eval(v, table))
            return result
        case ast.Compare(left=left, ops=[op], comparators=[right]):
            return _COMPARE[type(op)](_eval(left, table), _eval(right, table))
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return pc.if_else(_eval(test, table), _eval(body, table), _eval(orelse, table))
        case ast.Call(func=ast.Name(id=name), args=args):
            return _FUNCTIONS[name](*(_eval(a, table) for a in args))
    raise expressions.ExpressionError(f"cannot compile {ast.dump(node)}")
