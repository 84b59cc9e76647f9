"""The salesflow command: exit codes and messages."""
from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from webui.cli import main


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("SALESFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.setenv("SALESFLOW_INSTANCE_DIR", str(tmp_path))
    return tmp_path


def test_seed_demo_is_idempotent(env):
    runner = CliRunner()
    first = runner.invoke(main, ["seed-demo"])
    assert first.exit_code == 0, first.output
    assert "12 users created" in first.output
    again = runner.invoke(main, ["seed-demo"])
    assert again.exit_code == 0 and "already present" in again.output


def test_timers_run_with_nothing_due(env):
    result = CliRunner().invoke(main, ["timers", "run", "--at", "2030-01-01T00:00:00+08:00"])
    assert result.exit_code == 0, result.output
    assert "no timers due" in result.output


def test_timers_run_rejects_a_bad_time(env):
    result = CliRunner().invoke(main, ["timers", "run", "--at", "next tuesday"])
    assert result.exit_code == 2
    assert "ISO-8601" in result.output


def test_unreachable_database_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SALESFLOW_DATABASE_URL", "postgresql://nobody:secret@127.0.0.1:1/none")
    result = CliRunner().invoke(main, ["seed-demo"])
    assert result.exit_code == 1
    assert "cannot open the database" in result.output and "secret" not in result.output


@pytest.fixture
def spiff_logger():
    """The root logger at INFO, as the server's basicConfig leaves it (under pytest basicConfig does
    nothing: the root already has pytest's handlers), and the spiff logger reset afterwards."""
    logger, root = logging.getLogger("spiff"), logging.getLogger()
    root_level = root.level
    root.setLevel(logging.INFO)
    logger.setLevel(logging.NOTSET)  # earlier commands in this session set it
    yield logger
    logger.setLevel(logging.NOTSET)
    root.setLevel(root_level)


def test_spiffworkflow_state_changes_are_not_logged_by_default(env, spiff_logger, monkeypatch):
    """SpiffWorkflow logs every task state change at INFO; the server would write a dozen lines per command."""
    monkeypatch.delenv("SALESFLOW_LOG_LEVEL", raising=False)
    assert logging.getLogger("spiff.task").isEnabledFor(logging.INFO)  # what the command must change
    assert CliRunner().invoke(main, ["timers", "run"]).exit_code == 0
    assert not logging.getLogger("spiff.task").isEnabledFor(logging.INFO)
    assert logging.getLogger("spiff.task").isEnabledFor(logging.WARNING)
    monkeypatch.setenv("SALESFLOW_LOG_LEVEL", "debug")
    spiff_logger.setLevel(logging.NOTSET)
    assert CliRunner().invoke(main, ["timers", "run"]).exit_code == 0
    assert logging.getLogger("spiff").level == logging.NOTSET  # DEBUG leaves it to the root level


def test_a_bad_log_level_is_a_clear_error(env, monkeypatch):
    monkeypatch.setenv("SALESFLOW_LOG_LEVEL", "loud")
    result = CliRunner().invoke(main, ["timers", "run"])
    assert result.exit_code == 1
    assert "SALESFLOW_LOG_LEVEL" in result.output and "not a log level" in result.output
