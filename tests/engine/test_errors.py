"""Errors are not hidden: an engine bug or a database error is a 500 with its traceback logged and
nothing half-written; what the process got wrong stays a 422 with its real cause; one failing timer
never stops the batch; a timer that could never fire is refused at deploy."""
from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.commands import timers as timer_commands
from engine.definitions import DefinitionError, WorkflowDirectory, parse_bundle
from engine.errors import ProcessError
from engine.runtime import DEFAULT_WORKFLOWS_DIR
from tests.helpers import CLAIM, at, counts, invoiced


def test_what_the_process_got_wrong_stays_a_422_with_its_cause(engine, monkeypatch):
    import engine.services as services
    # a region the budget tables do not know: the service says so, as a process error
    monkeypatch.setattr(services, "_REMAINING", services._REMAINING.where(services._REGIONS.c.code == "nowhere"))
    before = counts(engine)
    with pytest.raises(ProcessError) as err:
        engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    assert "unknown region 'east'" in err.value.message and err.value.status == 422
    assert counts(engine) == before


def test_one_failing_timer_does_not_stop_the_batch(engine, monkeypatch, caplog):
    q3 = {"employee": "alice", "period": "2025-Q3", "cycle": "quarterly", "period_end": "2025-09-30"}
    first = engine.start("performance_appraisal", "ivan", q3, at=at("2025-09-30T18:00"))
    second = engine.start("performance_appraisal", "ivan", {**q3, "employee": "bob"}, at=at("2025-09-30T18:01"))
    real = timer_commands._fire_one

    def flaky(rt, timer_id, instance_id, when):
        if instance_id == first["id"]:
            raise RuntimeError("disk full")
        return real(rt, timer_id, instance_id, when)
    monkeypatch.setattr(timer_commands, "_fire_one", flaky)
    with caplog.at_level(logging.ERROR, logger="salesflow.engine"):
        fired = engine.fire_due_timers(at("2025-10-12T08:00"))
    assert [f.get("error") for f in fired if f["instance_id"] == first["id"]] == ["RuntimeError: disk full"]
    assert [f["name"] for f in fired if f["instance_id"] == second["id"]] == ["self_evaluation_overdue"]
    assert any(r.exc_info for r in caplog.records)  # the traceback is logged


@pytest.mark.parametrize("value, why", [("P3D", "must be quoted"), ("'P3X'", "not a valid timeDuration"),
                                        ("5", "not a date, a duration or a cycle")])
def test_a_timer_that_could_never_fire_is_refused_at_deploy(tmp_path, value, why):
    target = tmp_path / "workflows"
    shutil.copytree(DEFAULT_WORKFLOWS_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    path = target / "contract_review.bpmn"
    text = path.read_text(encoding="utf-8")
    old = "<bpmn:timeDate xsi:type=\"bpmn:tFormalExpression\">working_days_after(today(), 2)</bpmn:timeDate>"
    assert old in text
    path.write_text(text.replace(old, f"<bpmn:timeDuration xsi:type=\"bpmn:tFormalExpression\">{value}"
                                      "</bpmn:timeDuration>"), encoding="utf-8")
    bundle = WorkflowDirectory(target).bundles()["contract_review"]
    with pytest.raises(DefinitionError) as err:
        parse_bundle(bundle)
    assert why in str(err.value)


def test_the_secret_key_is_made_once_whoever_asks_first(tmp_path):
    from webui import _secret_key
    keys, barrier = [], threading.Barrier(8)

    def ask():
        barrier.wait()
        keys.append(_secret_key(str(tmp_path)))
    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    assert (Path(tmp_path) / "secret_key").stat().st_mode & 0o077 == 0


def test_a_setup_bug_is_not_reported_as_an_unreachable_database(tmp_path, monkeypatch):
    from engine.runtime import Engine
    from webui.cli import main
    monkeypatch.setenv("SALESFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite3'}")
    monkeypatch.setenv("SALESFLOW_INSTANCE_DIR", str(tmp_path))

    def broken(self):
        raise KeyError("expense_approval")
    monkeypatch.setattr(Engine, "setup", broken)
    result = CliRunner().invoke(main, ["deploy"])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)
    assert "cannot open the database" not in result.output
