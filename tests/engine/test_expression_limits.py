"""Expression bombs: refused at deploy when they can only blow up, bounded when they run
(nothing holds a worker for a second), and every expression SpiffWorkflow evaluates is checked."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from engine.calendar import BusinessCalendar
from engine.definitions import DefinitionError, WorkflowDirectory, parse_bundle
from engine.expressions import ExpressionError, RestrictedEnvironment, compile_expression
from tests.helpers import edit

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


@pytest.fixture(scope="module")
def env():
    return RestrictedEnvironment(BusinessCalendar(WORKFLOWS / "calendar.json"))


# ---------------------------------------------------------------- refused when compiling (deploy)
@pytest.mark.parametrize("expression", [
    "9**9**9", "9 ** 999999", "amount ** amount", "2 ** (10 ** 9)", "pow(9, 9) ** 99",
    "'x' * 10**9", "'x' * 1000000000", "[0] * 10**9", "(1, 2) * n", "n * 'ab'", "f'{x}' * 10**6",
    "1 << 10**9", "1 << n",
    "9" * 40, "'" + "x" * 5000 + "'", "x" * 5000,
    "'%999999999d' % 1", "'%.*f' % (10**9, 1)", "f'{amount:>1000000000}'", "f'{amount:{w}}'",
    "(lambda f: f(f))(lambda f: f(f))", "[*a, *a]", "{**d}", "(y := 1)",
    "amount.__class__", "''.join(x)", "'x'.ljust(10**9)", "'{}'.format(1)", "description.center(999999999)",
    "().__class__.__base__.__subclasses__()",
])
def test_bombs_are_refused_when_compiling(expression):
    with pytest.raises(ExpressionError):
        compile_expression(expression)


@pytest.mark.parametrize("expression", [
    "amount > 20000", "2 ** 10", "x ** 2", "'-' * 10", "round(a * 0.15 + b * 0.1, 1)", "amount * 100",
    "{'approve': 'approved'}[d['decision']]", "d.get('decision') == 'approve'", "sum(x for x in xs)",
    "'%.2f' % amount", "f'{amount:.2f}'", "working_days_after(today(), 3)", "not major",
])
def test_ordinary_expressions_still_compile(expression):
    compile_expression(expression)


# ---------------------------------------------------------------- bounded when running
@pytest.mark.parametrize("expression, data", [
    ("s * n", {"s": "x", "n": 10 ** 9}),
    ("n * s", {"s": [0], "n": 10 ** 9}),
    ("s + s", {"s": "x" * 99_999}),
    ("n * n * n", {"n": 2 ** 2000}),
    ("pow(n, m)", {"n": 9, "m": 10 ** 9}),
    ("n ** 64 ** 1", {"n": 10 ** 100}),
    ("[a for a in range(n) for b in range(n)]", {"n": 100_000}),
    ("[a for a in xs for b in xs for c in xs]", {"xs": list(range(1000))}),
    ("sum(range(n))", {"n": 10 ** 15}),
    ("len(list(range(n)))", {"n": 10 ** 9}),
    ("sorted(s * 1000 for i in range(1000))", {"s": "x" * 99}),
    ("max(x for x in range(n))", {"n": 10 ** 8}),
    ("fmt % 1", {"fmt": "%999999999d"}),
    ("working_days_after('2026-01-01', n)", {"n": 10 ** 9}),
    ("days_after('2026-01-01', n)", {"n": 10 ** 12}),
    ("loop_count(n)", {"n": 10 ** 9}),
])
def test_bombs_with_data_stop_within_a_second(env, expression, data):
    started = time.monotonic()
    with pytest.raises(ExpressionError):
        env.evaluate(expression, dict(data))
    assert time.monotonic() - started < 1.0


def test_data_cannot_replace_a_guard(env):
    # a data key named like a guard does not switch the guard off
    with pytest.raises(ExpressionError):
        env.evaluate("s * n", {"s": "x", "n": 10 ** 9, "_sf_mul_": None, "_getiter_": None})


def test_ordinary_evaluation_is_unchanged(env):
    assert env.evaluate("round((a + b) / 2, 1)", {"a": 3, "b": 4}) == 3.5
    assert env.evaluate("sum(x['amount'] for x in lines)", {"lines": [{"amount": 1.5}, {"amount": 2}]}) == 3.5
    assert env.evaluate("'-' * 3 + s", {"s": "x"}) == "---x"
    assert env.evaluate("2 ** 10", {}) == 1024
    assert env.evaluate("len(list(range(1000)))", {}) == 1000
    assert env.evaluate("d.get('k', 0) + 1", {"d": {"k": 1}}) == 2


# ---------------------------------------------------------------- deploy checks every expression
def edit_first(path: Path, old: str, new: str) -> None:
    edit(path, old, new, count=1)


def _deploy(workflows: Path, process_id: str = "expense_approval"):
    bundle = WorkflowDirectory(workflows).bundles()[process_id]
    started = time.monotonic()
    try:
        return parse_bundle(bundle)
    finally:
        assert time.monotonic() - started < 5


def test_the_shipped_workflows_deploy(workflows):
    for pid in ("expense_approval", "contract_review", "performance_appraisal", "lead_to_aftersales"):
        _deploy(workflows, pid)


def test_a_power_bomb_in_a_service_parameter_is_refused(workflows):
    edit_first(workflows / "expense_approval.bpmn", 'id="amount" type="any" value="amount"',
          'id="amount" type="any" value="9**9**9"')
    with pytest.raises(DefinitionError, match="power"):
        _deploy(workflows)


def test_a_repetition_bomb_in_a_timer_is_refused(workflows):
    path = next(p for p in workflows.glob("*.bpmn") if "working_days_after(today(), 2)" in p.read_text("utf-8"))
    edit_first(path, "working_days_after(today(), 2)", "working_days_after(today(), 2) + 'x' * 10**9")
    catalog = WorkflowDirectory(workflows).bundles()
    pid = next(p for p, b in catalog.items() if path.name in b["bpmn"])
    with pytest.raises(DefinitionError, match="repeating"):
        _deploy(workflows, pid)


MI = ('<bpmn:multiInstanceLoopCharacteristics isSequential="true">'
      '<bpmn:loopCardinality>{card}</bpmn:loopCardinality>'
      '<bpmn:completionCondition>{cond}</bpmn:completionCondition>'
      '</bpmn:multiInstanceLoopCharacteristics>')


def _add_loop(workflows: Path, xml: str) -> None:
    """Put loop characteristics on expense_approval's manual/user task `revise` or the first user task."""
    path = workflows / "expense_approval.bpmn"
    text = path.read_text(encoding="utf-8")
    match = re.search(r"(<bpmn:userTask [^>]*>.*?)(</bpmn:userTask>)", text, re.S)
    assert match
    body = match.group(1)
    # loop characteristics come after extensionElements/incoming/outgoing (XSD order)
    path.write_text(text.replace(match.group(0), body + xml + match.group(2), 1), encoding="utf-8")


@pytest.mark.parametrize("card, cond", [("9**9**9", "False"), ("3", "'x' * 10**9"), ("3", "().__class__")])
def test_multi_instance_expressions_are_checked(workflows, card, cond):
    _add_loop(workflows, MI.format(card=card, cond=cond))
    with pytest.raises(DefinitionError):
        _deploy(workflows)


def test_multi_instance_cardinality_is_bounded_when_it_runs(workflows, env):
    _add_loop(workflows, MI.format(card="amount", cond="False"))
    parsed = _deploy(workflows)
    cards = [ts.cardinality for ts in parsed.spec.task_specs.values() if isinstance(getattr(ts, "cardinality", None), str)]
    assert cards == ["loop_count(amount)"]
    with pytest.raises(ExpressionError):
        env.evaluate(cards[0], {"amount": 10 ** 9})
    assert env.evaluate(cards[0], {"amount": 3}) == 3


@pytest.mark.parametrize("loop", [
    '<bpmn:standardLoopCharacteristics><bpmn:loopCondition>9**9**9</bpmn:loopCondition>'
    '</bpmn:standardLoopCharacteristics>',
    '<bpmn:standardLoopCharacteristics loopMaximum="1000000000"/>',
    '<bpmn:standardLoopCharacteristics><bpmn:loopCondition>False</bpmn:loopCondition>'
    '</bpmn:standardLoopCharacteristics>',
])
def test_standard_loops_need_a_small_maximum_and_checked_condition(workflows, loop):
    _add_loop(workflows, loop)
    with pytest.raises(DefinitionError):
        _deploy(workflows)
