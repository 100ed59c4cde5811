"""The log configuration `serve` hands uvicorn (graph.logs)."""

import json
import logging
import logging.config
import re

import pytest

from graph.logs import current_request_id, install_request_ids, logging_config


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
        # Back to pytest's own handlers for the tests that follow.
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        for name in ("usage_events", "uvicorn", "uvicorn.access"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
        logging.getLogger().handlers.clear()
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


def test_records_skip_the_fields_no_line_shows() -> None:
    """The logging HOWTO's switches (graph.logs.skip_unlogged_record_fields): no walk up
    the stack for the caller, no thread or process looked up; the line above is unchanged."""
    install_request_ids()
    captured: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    logger = logging.getLogger("usage_events.test.records")
    handler = Capture()
    logger.addHandler(handler)
    try:
        logger.warning("hello")
    finally:
        logger.removeHandler(handler)

    (record,) = captured
    assert record.funcName == "(unknown function)"
    assert record.threadName is None
    assert record.processName is None
