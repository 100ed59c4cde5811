"""The log configuration `serve` hands uvicorn (graph.logs)."""

import json
import logging
import logging.config
import re
from collections.abc import Iterator

import pytest

from graph.logs import (
    current_request_id,
    install_request_ids,
    logging_config,
    skip_unlogged_record_fields,
)
from tests.support import undo_service_logging


def test_log_lines_are_json_objects_with_the_request_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The configuration `serve` hands uvicorn: one JSON object per line, on stderr."""
    install_request_ids()  # As create_app does; not left to whichever test ran before.
    logging.config.dictConfig(logging_config())
    try:
        token = current_request_id.set("abc123")
        try:
            logging.getLogger("usage_events.test").warning("hello %s", "world", extra={"n": 1})
        finally:
            current_request_id.reset(token)
        logging.getLogger("usage_events.test").info("outside")
    finally:
        undo_service_logging()
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first | {"time": None} == {
        "time": None,
        "level": "WARNING",
        "logger": "usage_events.test",
        "message": "hello world",
        "request_id": "abc123",
        "n": 1,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", first["time"])
    assert "request_id" not in second


@pytest.fixture
def switches_restored() -> Iterator[None]:
    """The logging module's process-wide switches, as they were before the test."""
    names = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks")
    before = {name: getattr(logging, name) for name in names if hasattr(logging, name)}
    yield
    for name, value in before.items():
        setattr(logging, name, value)


def test_records_skip_the_fields_no_line_shows(switches_restored: None) -> None:
    """The logging HOWTO's switches (graph.logs.skip_unlogged_record_fields, set by the
    factory `serve` runs): no walk up the stack for the caller, no thread or process
    looked up; the line above shows none of them."""
    captured: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    logger = logging.getLogger("usage_events.test.records")
    handler = Capture()
    logger.addHandler(handler)
    try:
        logger.warning("before")
        skip_unlogged_record_fields()
        logger.warning("after")
    finally:
        logger.removeHandler(handler)

    before, after = captured
    assert before.funcName == "test_records_skip_the_fields_no_line_shows"
    assert before.process is not None
    assert after.funcName == "(unknown function)"
    assert after.threadName is None
    assert after.process is None
    assert after.processName is None
