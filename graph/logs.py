"""What the server logs, and how: one JSON object per line, each with its request's id.

Every line carries `time`, `level`, `logger` and `message`; lines written while a request
is served carry its `request_id` too, so one grep finds the access line, any warning and
the one traceback of a failed request. Access lines (graph.request_log) add the method,
path, status, duration, business and GraphQL operation name. SQL parameters never reach
a line: the engine hides them (db.database), and no secret is ever logged.
"""

import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from pythonjsonlogger.orjson import OrjsonFormatter

# The id of the request this task serves ("" outside requests), set by graph.request_log.
current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")


def install_request_ids() -> None:
    """Make every log record written while a request is served carry its `request_id`.

    A record factory rather than a handler's filter: it applies whichever handlers are
    configured (uvicorn's, a test's capture, an embedding application's). Idempotent.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "adds_request_ids", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        request_id = current_request_id.get()
        if request_id:
            record.request_id = request_id
        return record

    factory.adds_request_ids = True  # type: ignore[attr-defined]
    factory.wraps = previous  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def records_are_the_services() -> bool:
    """Whether a record is made as a plain LogRecord with install_request_ids' field only:
    no other factory (an instrumentation library's, say) adds fields to a line."""
    factory = logging.getLogRecordFactory()
    return getattr(factory, "wraps", None) is logging.LogRecord


def skip_unlogged_record_fields() -> None:
    """Spare every log record the fields no line of ours shows (see JSON_FORMAT).

    The switches of the logging HOWTO's "Optimization" section: where the call was made
    from (a walk up the stack), the thread, the process and its multiprocessing name (and,
    from Python 3.12, the asyncio task). The access line of every request cost a quarter
    less with them off (issue 14). They apply to every logger of the process, so only
    `usage-events serve` sets them (graph.app.create_served_app), not an application
    that embeds the service's app and may log callers' line numbers.
    """
    logging._srcfile = None  # The HOWTO's own advice; it has no public setter.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if hasattr(logging, "logAsyncioTasks"):  # Python 3.12+
        logging.logAsyncioTasks = False


JSON_FORMAT = "%(levelname)s %(name)s %(message)s"
# OrjsonFormatter.jsonify_log_record's options, without and with json_indent.
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS
_INDENTED_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2
RENAMED_FIELDS = {"levelname": "level", "name": "logger"}


class ServiceJsonFormatter(OrjsonFormatter):
    """python-json-logger's formatter (with orjson) as the service sets it: `level`,
    `logger` and `message`, the record's own fields, then `time`, an ISO-8601 UTC time."""

    def __init__(self) -> None:
        super().__init__(JSON_FORMAT, rename_fields=RENAMED_FIELDS, timestamp="time")
        # What `line` knows of: a setting changed later (dictConfig's "." key sets static
        # fields, say) makes `format` write what `line` would not.
        self._built = True

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_built", False):
            object.__setattr__(self, "_built", False)
        object.__setattr__(self, name, value)

    def as_built(self) -> bool:
        """Whether no setting was set, or changed in place, since construction."""
        return (
            self._built
            and not self.static_fields
            and not self.defaults
            and self.rename_fields == RENAMED_FIELDS
        )

    def line(
        self, level: str, logger: str, message: str, fields: dict[str, Any], created: float
    ) -> str:
        """What `format` writes of a record with these values and `fields` as its own (no
        exception, no stack): graph.access_line writes a line without making a record.
        tests/graph/test_access_line.py holds the two equal, key order included."""
        data = {"level": level, "logger": logger, "message": message, **fields}
        data["time"] = datetime.fromtimestamp(created, tz=UTC)
        # What serialize_log_record(process_log_record(data)) returns (OrjsonFormatter's;
        # process_log_record gives its data back as it is), without their three calls
        # (with the other changes of its commit, 2 % of a point read's instructions).
        options = _INDENTED_JSON_OPTIONS if self.json_indent else _JSON_OPTIONS
        return self.prefix + orjson.dumps(data, default=self.json_default, option=options).decode()


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the service and uvicorn's own loggers, as JSON lines.

    Passed to uvicorn as its `log_config`, so every worker process configures itself alike.
    """
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "graph.logs.ServiceJsonFormatter"}},
        "handlers": {"stderr": handler},
        "loggers": {
            "usage_events": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # graph.request_log writes one line per request instead.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
