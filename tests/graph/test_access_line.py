"""The access line written straight to the service's handler, or the logging module's way
(graph.access_line): the same line either way, and any other configuration honoured."""

import functools
import io
import logging
import logging.config
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count
from typing import Any

import orjson
import pytest

from graph import access_line
from graph.access_line import log_access
from graph.logs import (
    ServiceJsonFormatter,
    current_request_id,
    install_request_ids,
    logging_config,
)
from tests.support import undo_service_logging

FIELDS: dict[str, Any] = {
    "method": "POST",
    "path": "/graphql",
    "status": 200,
    "duration_ms": 0.41,
    "business_id": "bus_01",
    "operation": "PeerEvent",
    "code": None,
    "client": "127.0.0.1",
}
ARGS = ("POST", "/graphql", 200)
NAMES = count()


class Configured:
    """A logger `<name>.access` under `<name>`, which holds the service's handler and does
    not propagate, as graph.logs.logging_config sets `usage_events`."""

    def __init__(self, name: str) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(ServiceJsonFormatter())
        self.parent = logging.getLogger(name)
        self.parent.addHandler(self.handler)
        self.parent.setLevel(logging.INFO)
        self.parent.propagate = False
        self.logger = logging.getLogger(f"{name}.access")
        self.root_handler: logging.Handler | None = None

    def propagate_to_a_root_handler(self) -> None:
        self.parent.propagate = True
        self.root_handler = logging.NullHandler()
        logging.getLogger().addHandler(self.root_handler)

    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.stream.getvalue().splitlines()]

    def close(self) -> None:
        if self.root_handler is not None:
            logging.getLogger().removeHandler(self.root_handler)
        self.parent.removeHandler(self.handler)
        self.parent.setLevel(logging.NOTSET)
        self.parent.propagate = True
        for logger in (self.parent, self.logger):
            logger.filters.clear()
            logger.handlers.clear()
            logger.disabled = False


@contextmanager
def service_logging() -> Iterator[Configured]:
    """Made within the test's body: pytest adds its capture handler to every logger that
    does not propagate as a test's call begins (which would make a second handler)."""
    install_request_ids()  # As create_app does; idempotent.
    made = Configured(f"test_access_line_{next(NAMES)}")
    token = current_request_id.set("rid-1")
    try:
        yield made
    finally:
        current_request_id.reset(token)
        made.close()


@pytest.fixture
def record_factory_restored() -> Iterator[None]:
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)


def no_record_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """Making a LogRecord fails the test. (LogRecord itself, never a method the logging
    module runs on the way, which would make graph.access_line take that way.)"""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the short way makes no record")

    monkeypatch.setattr(logging.LogRecord, "__init__", refuse)


def records_made(monkeypatch: pytest.MonkeyPatch) -> list[logging.LogRecord]:
    """Every LogRecord made from now on, as it is made."""
    made: list[logging.LogRecord] = []
    init = logging.LogRecord.__init__

    def noted(record: logging.LogRecord, *args: Any, **kwargs: Any) -> None:
        init(record, *args, **kwargs)
        made.append(record)

    monkeypatch.setattr(logging.LogRecord, "__init__", noted)
    return made


def test_the_line_is_what_the_formatter_writes_of_the_record() -> None:
    """Byte for byte, key order and time included: python-json-logger's own format of the
    record the logging module would make, and the line made without one."""
    install_request_ids()
    formatter = ServiceJsonFormatter()
    logger = logging.getLogger("test_access_line.compare")
    token = current_request_id.set("rid-7")
    try:
        record = logger.makeRecord(
            logger.name, logging.INFO, "", 0, "%s %s %s", ARGS, None, extra=FIELDS
        )
    finally:
        current_request_id.reset(token)
    line = formatter.line(
        "INFO", logger.name, "POST /graphql 200", {"request_id": "rid-7", **FIELDS}, record.created
    )
    assert line == formatter.format(record)
    assert list(orjson.loads(line)) == [
        "level",
        "logger",
        "message",
        "request_id",
        *FIELDS,
        "time",
    ]


@pytest.mark.parametrize(
    "setting", [{"json_indent": True}, {"prefix": "usage-events: "}], ids=["indent", "prefix"]
)
def test_the_line_follows_the_formatters_json_settings(setting: dict[str, Any]) -> None:
    """`line` writes the JSON itself rather than through python-json-logger's methods:
    still what `format` writes when those settings differ from the service's."""
    install_request_ids()
    formatter = ServiceJsonFormatter()
    for name, value in setting.items():
        setattr(formatter, name, value)
    logger = logging.getLogger("test_access_line.settings")
    record = logger.makeRecord(
        logger.name, logging.INFO, "", 0, "%s %s %s", ARGS, None, extra=FIELDS
    )
    line = formatter.line("INFO", logger.name, "POST /graphql 200", FIELDS, record.created)
    assert line == formatter.format(record)


def test_the_service_configuration_takes_the_short_way(monkeypatch: pytest.MonkeyPatch) -> None:
    with service_logging() as configured:
        no_record_made(monkeypatch)
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        [line] = configured.lines()
    # Key order included, as the formatter writes a record's (the test above).
    assert list((line | {"time": None}).items()) == list(
        {
            "level": "INFO",
            "logger": configured.logger.name,
            "message": "POST /graphql 200",
            "request_id": "rid-1",
            **FIELDS,
            "time": None,
        }.items()
    )


def test_outside_a_request_no_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    with service_logging() as configured:
        no_record_made(monkeypatch)
        token = current_request_id.set("")
        try:
            log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        finally:
            current_request_id.reset(token)
        [line] = configured.lines()
    assert "request_id" not in line
    assert line["message"] == "POST /graphql 200"


def test_a_level_above_info_writes_nothing() -> None:
    with service_logging() as configured:
        configured.logger.setLevel(logging.WARNING)
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        configured.logger.setLevel(logging.NOTSET)
        assert configured.lines() == []


def test_a_disabled_logger_writes_nothing() -> None:
    with service_logging() as configured:
        configured.logger.disabled = True
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        assert configured.lines() == []


class Tagged(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.tag = "seen"
        return True


class Dropping(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


Lines = list[dict[str, Any]]

# Each changes what the logging module does with the record; the lines written show it.
CONFIGURATIONS: dict[str, tuple[Callable[[Configured], None], Callable[[Lines], bool]]] = {
    "a filter on the logger that adds a field": (
        lambda c: c.logger.addFilter(Tagged()),
        lambda lines: [line.get("tag") for line in lines] == ["seen"],
    ),
    "a filter on the logger that drops the record": (
        lambda c: c.logger.addFilter(Dropping()),
        lambda lines: lines == [],
    ),
    "a filter on the parent": (
        # The logging module applies the first logger's filters only: the parent's never
        # runs, whichever way is taken.
        lambda c: c.parent.addFilter(Tagged()),
        lambda lines: len(lines) == 1 and "tag" not in lines[0],
    ),
    "a filter on the handler that adds a field": (
        lambda c: c.handler.addFilter(Tagged()),
        lambda lines: [line.get("tag") for line in lines] == ["seen"],
    ),
    "a filter on the handler that drops the record": (
        lambda c: c.handler.addFilter(Dropping()),
        lambda lines: lines == [],
    ),
    "a handler level above INFO": (
        lambda c: c.handler.setLevel(logging.WARNING),
        lambda lines: lines == [],
    ),
    "a second handler on the same stream": (
        lambda c: c.logger.addHandler(c.handler),
        lambda lines: len(lines) == 2 and lines[0] == lines[1],
    ),
    "the parent propagating to a root with a handler": (
        lambda c: c.propagate_to_a_root_handler(),
        # The root's handler takes the record too; the stream has its one line.
        lambda lines: len(lines) == 1,
    ),
}


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
def test_any_other_configuration_is_honoured(
    monkeypatch: pytest.MonkeyPatch, configuration: str
) -> None:
    configure, expected = CONFIGURATIONS[configuration]
    with service_logging() as configured:
        configure(configured)
        made = records_made(monkeypatch)
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        lines = configured.lines()
    assert expected(lines), lines
    # The logging module's way: a record was made.
    assert len(made) == 1


def test_another_formatter_is_used() -> None:
    with service_logging() as configured:
        configured.handler.setFormatter(logging.Formatter("%(message)s %(request_id)s %(client)s"))
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        assert configured.stream.getvalue() == "POST /graphql 200 rid-1 127.0.0.1\n"


def test_a_handler_of_another_class_is_used() -> None:
    records: list[logging.LogRecord] = []

    class Capture(logging.StreamHandler[io.StringIO]):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    with service_logging() as configured:
        capture = Capture(configured.stream)
        capture.setFormatter(ServiceJsonFormatter())
        configured.parent.removeHandler(configured.handler)
        configured.parent.addHandler(capture)
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        configured.parent.removeHandler(capture)
        assert configured.stream.getvalue() == ""
    [record] = records
    assert record.getMessage() == "POST /graphql 200"
    assert record.__dict__["request_id"] == "rid-1"


def test_another_record_factory_is_honoured(record_factory_restored: None) -> None:
    with service_logging() as configured:
        previous = logging.getLogRecordFactory()

        def traced(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.trace_id = "t-1"
            return record

        logging.setLogRecordFactory(traced)
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        [line] = configured.lines()
    assert line["trace_id"] == "t-1"
    assert line["request_id"] == "rid-1"


@pytest.mark.parametrize(
    "failure",
    ["a closed stream", "a value JSON cannot hold"],
)
def test_a_failed_line_is_the_handlers_to_report(
    monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """As StreamHandler.emit does: handleError, never an exception out of the request's
    middleware. The record it gets is the short way's (made for the report only, with no
    source file), so the short way was taken."""
    reported: list[logging.LogRecord] = []
    fields = FIELDS
    with service_logging() as configured:
        # handleError is the handler's to decide either way: the short way calls it too.
        monkeypatch.setattr(configured.handler, "handleError", reported.append)
        if failure == "a closed stream":
            configured.stream.close()
        else:
            fields = FIELDS | {"path": "/graphql\udc80"}  # A lone surrogate.
        log_access(configured.logger, "%s %s %s", ARGS, fields)
    [record] = reported
    assert record.getMessage() == "POST /graphql 200"
    assert record.pathname == ""


def test_logging_disabled_writes_nothing() -> None:
    with service_logging() as configured:
        logging.disable(logging.INFO)
        try:
            log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        finally:
            logging.disable(logging.NOTSET)
        assert configured.lines() == []


def test_a_tracer_wrapping_make_record_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a tracer's log injection does: a wrapper of Logger.makeRecord (functools.wraps
    copies its name and module) adds the trace's id to every record."""
    make_record = logging.Logger.makeRecord

    @functools.wraps(make_record)
    def traced(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(self, *args, **kwargs)
        record.trace_id = "t-2"
        return record

    with service_logging() as configured:
        monkeypatch.setattr(logging.Logger, "makeRecord", traced)
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        [line] = configured.lines()
    assert line["trace_id"] == "t-2"


def test_an_error_tracker_replacing_call_handlers_sees_the_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As an error tracker's logging integration does with Logger.callHandlers."""
    seen: list[str] = []
    call_handlers = logging.Logger.callHandlers

    def watched(self: logging.Logger, record: logging.LogRecord) -> None:
        seen.append(record.getMessage())
        call_handlers(self, record)

    with service_logging() as configured:
        monkeypatch.setattr(logging.Logger, "callHandlers", watched)
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        assert len(configured.lines()) == 1
    assert seen == ["POST /graphql 200"]


def test_a_logger_method_replaced_on_the_logger_is_used() -> None:
    seen: list[str] = []
    with service_logging() as configured:
        call_handlers = configured.logger.callHandlers

        def watched(record: logging.LogRecord) -> None:
            seen.append(record.getMessage())
            call_handlers(record)

        configured.logger.callHandlers = watched  # type: ignore[method-assign]
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        assert len(configured.lines()) == 1
    assert seen == ["POST /graphql 200"]


def test_a_handler_method_replaced_on_the_handler_is_used() -> None:
    emitted: list[logging.LogRecord] = []
    with service_logging() as configured:
        configured.handler.emit = emitted.append  # type: ignore[method-assign,assignment]
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        assert configured.lines() == []
    [record] = emitted
    assert record.getMessage() == "POST /graphql 200"


@pytest.mark.parametrize("how", ["static fields set", "static fields changed", "timestamp"])
def test_formatter_settings_changed_after_construction_are_honoured(how: str) -> None:
    """dictConfig's "." key sets attributes once the formatter is made."""
    with service_logging() as configured:
        formatter = configured.handler.formatter
        assert isinstance(formatter, ServiceJsonFormatter)
        if how == "static fields set":
            formatter.static_fields = {"env": "prod"}
        elif how == "static fields changed":
            formatter.static_fields["env"] = "prod"
        else:
            formatter.timestamp = "ts"
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        [line] = configured.lines()
    if how == "timestamp":
        assert "ts" in line
        assert "time" not in line
    else:
        assert line["env"] == "prod"


def test_formatting_lines_leaves_the_formatter_as_built() -> None:
    """Its other lines (warnings, uvicorn's) are formatted the logging module's way: that
    changes nothing the short way relies on."""
    formatter = ServiceJsonFormatter()
    record = logging.getLogger("test_access_line.other").makeRecord(
        "test_access_line.other", logging.WARNING, "", 0, "%s", ("x",), None
    )
    formatter.format(record)
    assert formatter.as_built()


def test_the_configuration_serve_hands_uvicorn_takes_the_short_way(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    install_request_ids()
    logging.config.dictConfig(logging_config())
    access = logging.getLogger("usage_events.access")
    try:
        no_record_made(monkeypatch)
        token = current_request_id.set("rid-9")
        try:
            log_access(access, "%s %s %s", ARGS, FIELDS)
        finally:
            current_request_id.reset(token)
    finally:
        undo_service_logging()
    [line] = [orjson.loads(each) for each in capsys.readouterr().err.splitlines()]
    assert (line["logger"], line["request_id"], line["client"]) == (
        "usage_events.access",
        "rid-9",
        "127.0.0.1",
    )


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verdicts kept as in serve's processes, for this test only."""
    monkeypatch.setattr(access_line, "_kept_verdicts", {})
    monkeypatch.setattr(access_line, "_settled", False)
    access_line.settle_verdicts()


def drop_every_record(configured: Configured) -> None:
    configured.logger.addFilter(lambda _record: False)


@pytest.mark.usefixtures("settled")
def test_once_settled_a_short_way_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    with service_logging() as configured:
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        # Asked again, the filter would turn the line away (as below, unsettled).
        drop_every_record(configured)
        no_record_made(monkeypatch)
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        lines = configured.lines()
    assert len(lines) == 2


@pytest.mark.usefixtures("settled")
def test_once_settled_the_logging_modules_way_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    with service_logging() as configured:
        second = logging.StreamHandler(io.StringIO())
        configured.logger.addHandler(second)
        made = records_made(monkeypatch)
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        configured.logger.removeHandler(second)
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        lines = configured.lines()
    assert len(lines) == 2
    assert len(made) == 2


@pytest.mark.usefixtures("settled")
def test_once_settled_a_disabled_logger_still_writes_nothing() -> None:
    with service_logging() as configured:
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        configured.logger.disabled = True
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        lines = configured.lines()
    assert len(lines) == 1


def test_unsettled_every_line_asks_again() -> None:
    assert not access_line._settled
    with service_logging() as configured:
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        drop_every_record(configured)
        log_access(configured.logger, "%s %s %s", ARGS, FIELDS)
        lines = configured.lines()
    assert len(lines) == 1


def test_serve_settles_the_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """create_served_app, the factory serve runs, settles them before making the app."""
    import graph.app

    calls: list[str] = []
    monkeypatch.setattr(graph.app, "skip_unlogged_record_fields", lambda: calls.append("skip"))
    monkeypatch.setattr(graph.app, "settle_verdicts", lambda: calls.append("settle"))
    monkeypatch.setattr(graph.app, "create_app", lambda: calls.append("app"))
    graph.app.create_served_app()
    assert calls == ["skip", "settle", "app"]
