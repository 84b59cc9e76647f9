"""Expressions of BPMN conditions, timers, service parameters and DMN cells,
compiled with RestrictedPython and evaluated with guarded builtins only.

Script tasks and pre/post scripts are refused at deploy time (definitions.py), so
exec is never needed here. Service tasks call the operations registered in
services.py, inside the command's transaction.
"""
from __future__ import annotations

import ast
import json
from datetime import date, datetime, timedelta
from functools import lru_cache

from RestrictedPython import compile_restricted_eval, safe_builtins
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import guarded_iter_unpack_sequence, safer_getattr
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

from . import clock
from .errors import EngineError


class ExpressionError(ValueError):
    pass


@lru_cache(maxsize=4096)
def compile_expression(expression: str):
    result = compile_restricted_eval(expression, "<expression>")
    if result.errors:
        raise ExpressionError(f"expression {expression!r} is not allowed: {'; '.join(result.errors)}")
    return result.code


def _as_date(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _make_helpers(calendar):
    def working_days_after(start, n):
        """ISO datetime of the end of the n-th working day after `start` (a date or ISO string)."""
        return calendar.deadline(start, int(n)).isoformat()

    def days_after(start, n):
        """ISO datetime `n` calendar days after `start` (end of that day in the company's time zone)."""
        d = _as_date(start) + timedelta(days=int(n))
        return datetime(d.year, d.month, d.day, 23, 59, 59, tzinfo=calendar.tz).isoformat()

    def today():
        return clock.now().astimezone(calendar.tz).date().isoformat()

    def month_of(value):
        return _as_date(value).isoformat()[:7]

    return {
        "working_days_after": working_days_after,
        "days_after": days_after,
        "today": today,
        "month_of": month_of,
    }


class RestrictedEnvironment(BasePythonScriptEngineEnvironment):
    def __init__(self, calendar):
        builtins = dict(safe_builtins)
        for name in ("min", "max", "sum", "any", "all", "round", "abs", "len", "sorted", "dict", "list", "set"):
            builtins[name] = __builtins__[name] if isinstance(__builtins__, dict) else getattr(__builtins__, name)
        super().__init__({
            "__builtins__": builtins,
            "_getattr_": safer_getattr,
            "_getitem_": default_guarded_getitem,
            "_getiter_": default_guarded_getiter,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            **_make_helpers(calendar),
        })

    def evaluate(self, expression, context, external_context=None):
        code = compile_expression(expression)
        scope = dict(self.globals)
        if external_context:
            scope.update(external_context)
        scope.update(context)
        scope["__builtins__"] = self.globals["__builtins__"]
        return eval(code, scope)  # noqa: S307 - RestrictedPython-compiled code, guarded globals

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
        try:
            result = self.services.call(operation_name, task, params)
        except EngineError:  # a refusal with its own status and field errors (e.g. an unknown region: 422)
            raise
        except Exception as exc:  # surfaced as a task error with the operation named
            raise WorkflowTaskException(f"service {operation_name} failed: {exc}", task=task, exception=exc)
        return json.dumps(result)
