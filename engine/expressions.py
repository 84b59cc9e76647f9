"""Expressions of BPMN conditions, timers, service parameters and DMN cells,
compiled with RestrictedPython and evaluated with guarded builtins only.

Script tasks and pre/post scripts are refused at deploy time (definitions.py), so
exec is never needed here. Service tasks call the operations registered in
services.py, inside the command's transaction.
"""
from __future__ import annotations

import ast
import contextvars
import json
import re
import time
from datetime import date, datetime, timedelta
from functools import lru_cache

from RestrictedPython import compile_restricted_eval, safe_builtins
from RestrictedPython.Eval import default_guarded_getitem
from RestrictedPython.Guards import guarded_iter_unpack_sequence, safer_getattr
from RestrictedPython.transformer import RestrictingNodeTransformer
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

from . import clock


class ExpressionError(ValueError):
    pass


# ------------------------------------------------------------------ limits
# Refused when compiling (so at deploy): what can only blow up. Bounded when evaluating: the rest.
MAX_EXPRESSION_LENGTH = 4000  # characters of one expression
MAX_LITERAL_DIGITS = 18  # an integer literal (amounts, thresholds) has at most this many digits
MAX_LITERAL_STRING = 1000  # characters of a string literal
MAX_CONSTANT_EXPONENT = 64  # `x ** n` needs a constant n with |n| <= this
MAX_CONSTANT_REPEAT = 1000  # `'-' * n`, `[0] * n` with a literal sequence need a constant n <= this
MAX_SHIFT = 64  # `x << n`: a constant n <= this
MAX_INT_BITS = 4096  # any integer an expression computes (about 1,233 digits)
MAX_SEQUENCE = 100_000  # items or characters of any string, list or range an expression builds
MAX_WORK = 200_000  # items iterated plus items built, per evaluation
MAX_SECONDS = 0.5  # wall clock per evaluation, checked as the work is counted
MAX_DAYS = 3660  # working_days_after / days_after: at most ten years ahead
MAX_LOOP_COUNT = 100  # multi-instance cardinality and loopMaximum
# Attributes an expression may read: the data is JSON (dicts, lists, strings, numbers) and dates.
ALLOWED_ATTRIBUTES = frozenset({
    "get", "keys", "values", "items", "count", "index",
    "lower", "upper", "strip", "lstrip", "rstrip", "startswith", "endswith", "isdigit", "title", "capitalize",
    "split", "year", "month", "day", "isoformat", "weekday", "isoweekday", "date",
})
_SEQUENCE_NODES = (ast.List, ast.Tuple, ast.ListComp, ast.JoinedStr, ast.Set, ast.SetComp)
_WIDE_FORMAT = re.compile(r"%[-#0 +]*(\*|\d{4,})|%[-#0 +]*\d*\.(\*|\d{4,})")
_WIDE_SPEC = re.compile(r"\d{4,}|\{")


def _small_constant(node, limit) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
            and abs(node.value) <= limit)


def _is_literal_sequence(node) -> bool:
    return isinstance(node, _SEQUENCE_NODES) or (isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)))


class BoundedTransformer(RestrictingNodeTransformer):
    """RestrictedPython's checks plus SalesFlow's: no lambdas, no unpacking into displays, no
    attributes beyond ALLOWED_ATTRIBUTES, bounded literals, powers and repetitions; and every
    `*`, `**`, `+`, `%` and `<<` becomes a call of a guard that checks the size of what it builds."""

    _GUARDS = {ast.Mult: "_sf_mul_", ast.Pow: "_sf_pow_", ast.Add: "_sf_add_", ast.Mod: "_sf_mod_",
               ast.LShift: "_sf_lshift_"}

    def visit_Constant(self, node):
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) > MAX_LITERAL_DIGITS:
            self.error(node, f"integer literal with more than {MAX_LITERAL_DIGITS} digits")
        elif isinstance(value, (str, bytes)) and len(value) > MAX_LITERAL_STRING:
            self.error(node, f"string literal longer than {MAX_LITERAL_STRING} characters")
        elif isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
            self.error(node, "non-finite literal")
        return super().visit_Constant(node)

    def visit_Lambda(self, node):
        self.error(node, "lambda is not allowed in expressions")
        return node

    def visit_NamedExpr(self, node):
        self.error(node, "assignment expressions are not allowed")
        return node

    def visit_Starred(self, node):
        self.error(node, "unpacking (*x) is not allowed in expressions")
        return node

    def visit_Dict(self, node):
        if any(key is None for key in node.keys):
            self.error(node, "unpacking (**x) is not allowed in expressions")
        return super().visit_Dict(node)

    def visit_Attribute(self, node):
        if node.attr not in ALLOWED_ATTRIBUTES:
            self.error(node, f"attribute {node.attr!r} is not allowed (allowed: {', '.join(sorted(ALLOWED_ATTRIBUTES))})")
        return super().visit_Attribute(node)

    def visit_FormattedValue(self, node):
        spec = node.format_spec
        if spec is not None:
            text = "".join(v.value for v in spec.values if isinstance(v, ast.Constant)) \
                if isinstance(spec, ast.JoinedStr) else ""
            if not isinstance(spec, ast.JoinedStr) or any(not isinstance(v, ast.Constant) for v in spec.values) \
                    or _WIDE_SPEC.search(text):
                self.error(node, "format specs must be constant and narrower than 1000 characters")
        return super().visit_FormattedValue(node)

    def visit_BinOp(self, node):
        op = type(node.op)
        if op is ast.Pow and not _small_constant(node.right, MAX_CONSTANT_EXPONENT):
            self.error(node, f"a power needs a constant exponent of at most {MAX_CONSTANT_EXPONENT} (`x ** 2`)")
        if op is ast.LShift and not _small_constant(node.right, MAX_SHIFT):
            self.error(node, f"a shift needs a constant of at most {MAX_SHIFT}")
        if op is ast.Mult:
            for seq, count in ((node.left, node.right), (node.right, node.left)):
                if _is_literal_sequence(seq) and not _small_constant(count, MAX_CONSTANT_REPEAT):
                    self.error(node, f"repeating a sequence needs a constant count of at most {MAX_CONSTANT_REPEAT}")
        if op is ast.Mod and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str) \
                and _WIDE_FORMAT.search(node.left.value):
            self.error(node, "%-format widths must be constant and narrower than 1000 characters")
        node = self.node_contents_visit(node)
        guard = self._GUARDS.get(op)
        if guard is None:
            return node
        call = ast.Call(func=ast.copy_location(ast.Name(id=guard, ctx=ast.Load()), node),
                        args=[node.left, node.right], keywords=[])
        return ast.fix_missing_locations(ast.copy_location(call, node))


@lru_cache(maxsize=4096)
def compile_expression(expression: str):
    if not isinstance(expression, str):
        raise ExpressionError(f"expression {expression!r} is not text")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression {expression[:60]!r}... is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        result = compile_restricted_eval(expression, "<expression>", policy=BoundedTransformer)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, OverflowError) as exc:
        raise ExpressionError(f"expression {expression[:200]!r} is not allowed: {exc}") from None
    if result.errors:
        raise ExpressionError(f"expression {expression[:200]!r} is not allowed: {'; '.join(result.errors)}")
    return result.code


# ------------------------------------------------------------------ run-time bounds
class Budget:
    """The work one evaluation may do; every guard charges it and checks the clock."""
    __slots__ = ("left", "deadline")

    def __init__(self):
        self.left = MAX_WORK
        self.deadline = time.monotonic() + MAX_SECONDS

    def charge(self, units: int) -> None:
        self.left -= max(int(units), 1)
        if self.left < 0:
            raise ExpressionError(f"expression does too much work (more than {MAX_WORK:,} steps)")
        if time.monotonic() > self.deadline:
            raise ExpressionError(f"expression took longer than {MAX_SECONDS} s")


_budget: contextvars.ContextVar[Budget] = contextvars.ContextVar("salesflow_expression_budget")


def _charge(units: int) -> None:
    budget = _budget.get(None)
    if budget is None:  # guards called outside evaluate(): a fresh budget per call
        budget = Budget()
    budget.charge(units)


def _size(value) -> int | None:
    if isinstance(value, (str, bytes, list, tuple)):
        return len(value)
    return None


def _check_int(value):
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ExpressionError(f"number too large (more than {MAX_INT_BITS} bits)")
    return value


def _check_sequence(size: int) -> None:
    if size > MAX_SEQUENCE:
        raise ExpressionError(f"expression would build a sequence of {size:,} items (at most {MAX_SEQUENCE:,})")
    _charge(size)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def guarded_mul(a, b):
    for seq, count in ((a, b), (b, a)):
        if _size(seq) is not None and _is_int(count):
            _check_sequence(_size(seq) * max(count, 0))
            return a * b
    if _is_int(a) and _is_int(b):
        if a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
            raise ExpressionError(f"number too large (more than {MAX_INT_BITS} bits)")
    return _check_int(a * b)


def guarded_pow(a, b, mod=None):
    if mod is None and _is_int(a) and _is_int(b) and b > 0 and abs(a) > 1:
        if (abs(a).bit_length() - 1) * b > MAX_INT_BITS:
            raise ExpressionError(f"number too large (more than {MAX_INT_BITS} bits)")
    if mod is not None:
        for value in (a, b, mod):
            _check_int(value)
        return pow(a, b, mod)
    if isinstance(b, (int, float)) and abs(b) > 10_000 and not (isinstance(a, (int, float)) and abs(a) <= 1):
        raise ExpressionError("exponent too large")
    return _check_int(a ** b)


def guarded_lshift(a, b):
    if _is_int(a) and _is_int(b) and a.bit_length() + max(b, 0) > MAX_INT_BITS:
        raise ExpressionError(f"number too large (more than {MAX_INT_BITS} bits)")
    return a << b


def guarded_add(a, b):
    size_a, size_b = _size(a), _size(b)
    if size_a is not None and size_b is not None:
        _check_sequence(size_a + size_b)
    return _check_int(a + b)


def guarded_mod(a, b):
    if isinstance(a, str):
        if _WIDE_FORMAT.search(a):
            raise ExpressionError("%-format widths must be narrower than 1000 characters")
        result = a % b
        _check_sequence(len(result))
        return result
    return a % b


def guarded_range(*args):
    for value in args:
        if not _is_int(value):
            raise ExpressionError("range() takes integers")
    result = range(*args)
    if len(result) > MAX_SEQUENCE:
        raise ExpressionError(f"range of {len(result):,} items (at most {MAX_SEQUENCE:,})")
    return result


def _counted(iterable):
    """Iterate, charging the evaluation's budget per item (comprehensions and consuming builtins)."""
    budget = _budget.get(None) or Budget()
    for item in iterable:
        budget.charge(1)
        yield item


def guarded_getiter(ob):
    return _counted(ob)


def _consuming(fn):
    """A builtin that consumes an iterable, fed through the budget."""
    def call(*args, **kwargs):
        if args and not isinstance(args[0], (dict,)) and hasattr(args[0], "__iter__"):
            args = (_counted(args[0]), *args[1:])
        return fn(*args, **kwargs)
    call.__name__ = getattr(fn, "__name__", "builtin")
    return call


def guarded_getattr(ob, name, default=None, getattr=safer_getattr):
    if name not in ALLOWED_ATTRIBUTES:
        raise ExpressionError(f"attribute {name!r} is not allowed")
    return getattr(ob, name, default)


def _bounded_days(n) -> int:
    n = int(n)
    if abs(n) > MAX_DAYS:
        raise ExpressionError(f"{n} days is out of range (at most {MAX_DAYS})")
    return n


def _as_date(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _make_helpers(calendar):
    def working_days_after(start, n):
        """ISO datetime of the end of the n-th working day after `start` (a date or ISO string)."""
        return calendar.deadline(start, _bounded_days(n)).isoformat()

    def days_after(start, n):
        """ISO datetime `n` calendar days after `start` (end of that day in the company's time zone)."""
        d = _as_date(start) + timedelta(days=_bounded_days(n))
        return datetime(d.year, d.month, d.day, 23, 59, 59, tzinfo=calendar.tz).isoformat()

    def today():
        return clock.now().astimezone(calendar.tz).date().isoformat()

    def month_of(value):
        return _as_date(value).isoformat()[:7]

    def loop_count(n):
        """A multi-instance cardinality (definitions.py wraps every one in this): 0..MAX_LOOP_COUNT."""
        if not _is_int(n) or not 0 <= n <= MAX_LOOP_COUNT:
            raise ExpressionError(f"loop cardinality {n!r} is out of range (0-{MAX_LOOP_COUNT})")
        return n

    return {
        "loop_count": loop_count,
        "working_days_after": working_days_after,
        "days_after": days_after,
        "today": today,
        "month_of": month_of,
    }


def _builtin(name: str):
    return __builtins__[name] if isinstance(__builtins__, dict) else getattr(__builtins__, name)


class RestrictedEnvironment(BasePythonScriptEngineEnvironment):
    def __init__(self, calendar):
        builtins = dict(safe_builtins)
        for name in ("setattr", "delattr", "__build_class__", "_getattr_"):
            builtins.pop(name, None)
        for name in ("round", "abs", "len"):
            builtins[name] = _builtin(name)
        for name in ("min", "max", "sum", "any", "all", "sorted", "dict", "list", "set", "tuple"):
            builtins[name] = _consuming(_builtin(name))
        builtins["range"] = guarded_range
        builtins["pow"] = guarded_pow
        self.guards = {
            "_getattr_": guarded_getattr,
            "_getitem_": default_guarded_getitem,
            "_getiter_": guarded_getiter,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            "_sf_mul_": guarded_mul,
            "_sf_pow_": guarded_pow,
            "_sf_add_": guarded_add,
            "_sf_mod_": guarded_mod,
            "_sf_lshift_": guarded_lshift,
        }
        super().__init__({"__builtins__": builtins, **self.guards, **_make_helpers(calendar)})

    def evaluate(self, expression, context, external_context=None):
        code = compile_expression(expression)
        scope = dict(self.globals)
        if external_context:
            scope.update(external_context)
        scope.update(context)
        scope.update(self.guards)  # data keys never replace a guard
        scope["__builtins__"] = self.globals["__builtins__"]
        token = _budget.set(Budget())
        try:
            return eval(code, scope)  # noqa: S307 - RestrictedPython-compiled code, guarded globals
        except (MemoryError, RecursionError, OverflowError) as exc:
            raise ExpressionError(f"expression {expression[:200]!r} failed: {exc.__class__.__name__}") from None
        finally:
            _budget.reset(token)

    def execute(self, script, context, external_context=None):
        raise ExpressionError("scripts are not allowed in SalesFlow processes")


class SalesflowScriptEngine(PythonScriptEngine):
    """Attached to every workflow after creation and after every load (it is not serialized)."""

    def __init__(self, calendar, services):
        super().__init__(environment=RestrictedEnvironment(calendar))
        self.services = services

    def validate(self, expression):
        ast.parse(expression)

    def call_service(self, task, operation_name, operation_params, **_kwargs):
        params = {name: spec["value"] for name, spec in operation_params.items()}
        # a ProcessError (the process's own failure: 422, its cause named) and anything else — a bug or
        # a database error: a 500 with its traceback — pass through as what they are
        result = self.services.call(operation_name, task, params)
        return json.dumps(result)
