"""The access line of a request, written straight to the service's own handler when it may be.

Every request writes one line (graph.request_log). Made the logging module's way — a
LogRecord, the record factory, the loggers' and handler's calls, python-json-logger's
formatting — that line cost a sixth of a point read's instructions (issue 14, counted
under callgrind: 123 000 of 724 000). So when the access logger's records would reach one
handler only, and that handler is the one `serve` configures (graph.logs.logging_config:
a plain StreamHandler with ServiceJsonFormatter) with nothing that could filter or add to
a record on the way, the line is made by that formatter from the values themselves and
written as the handler writes, under its lock. Anything else takes the logging module's
way: another handler or a second one, a filter, a handler level above INFO, another
record factory, formatter settings changed after it was made, and any of the logging
module's methods on the way replaced, on its class or on the object (as error trackers
and tracers do to see or enrich records). So the logging configuration is honoured
either way, and the line is the same: tests/graph/test_access_line.py compares the two.

Whether the short way may be taken is asked at every line, except in the processes of
`usage-events serve` (settle_verdicts): there logging is configured once, by serve, before
the first request, so each logger's verdict is drawn at its first line and kept.
"""

import logging
import operator
import time
from typing import Any

from graph.logs import ServiceJsonFormatter, current_request_id, records_are_the_services

# What the logging module would run for the line, by class: where any of these is not the
# logging module's own (an error tracker or tracer patches Logger.callHandlers or
# makeRecord to see or enrich records), the logging module's way is taken.
_LOGGER_METHODS = ("isEnabledFor", "info", "_log", "makeRecord", "handle", "callHandlers")
# Not handleError: the short way calls it as StreamHandler.emit does.
_HANDLER_METHODS = ("handle", "acquire", "release", "filter", "format", "emit", "flush")
_logger_methods = operator.attrgetter(*_LOGGER_METHODS)
_handler_methods = operator.attrgetter(*_HANDLER_METHODS)
_LOGGING_SOURCE = logging.__file__
_METHOD_NAMES = frozenset(_LOGGER_METHODS + _HANDLER_METHODS)
# The methods last seen to be the logging module's own: looked at again only when one of
# them is another object.
_unpatched: tuple[Any, ...] = ()
# Whether each logger's verdict is kept once drawn (settle_verdicts), and the kept ones:
# the handler the short way writes to, or None for the logging module's way.
_settled = False
_kept_verdicts: dict[logging.Logger, logging.StreamHandler[Any] | None] = {}


def settle_verdicts() -> None:
    """Keep each logger's verdict (short way or the logging module's) from its first line on.

    For `usage-events serve` only (graph.app.create_served_app). Its processes configure
    logging once, from serve's own configuration, before they serve anything, and nothing
    in them configures it again: what an instrumentation wraps at start-up is wrapped by
    the first line, which sees it. Asked at every line, the question cost about 2 % of a
    point read's CPU under load (issue 14), to watch for changes that never come there. An
    application that embeds the service's app, and may configure logging at any time, is
    asked at every line.
    """
    global _settled
    _settled = True


def log_access(
    logger: logging.Logger, message: str, args: tuple[Any, ...], fields: dict[str, Any]
) -> None:
    """`logger.info(message, *args, extra=fields)`, the short way where it is the same."""
    if not logger.isEnabledFor(logging.INFO):
        return
    if _settled and logger in _kept_verdicts:
        handler = _kept_verdicts[logger]
    else:
        handler = _short_way_handler(logger)
        if _settled:
            _kept_verdicts[logger] = handler
    if handler is None:
        logger.info(message, *args, extra=fields)
        return
    formatter = handler.formatter
    assert isinstance(formatter, ServiceJsonFormatter)
    request_id = current_request_id.get()
    # The record factory's field comes first, as it is set before the record's extras.
    own_fields = {"request_id": request_id, **fields} if request_id else fields
    created = time.time()
    # StreamHandler.emit, under the lock Handler.handle takes around it (taken as
    # Handler.acquire takes it, without that method's call).
    lock = handler.lock
    if lock is not None:
        lock.acquire()
    try:
        line = formatter.line("INFO", logger.name, message % args, own_fields, created)
        stream = handler.stream
        stream.write(line + handler.terminator)
        # StreamHandler.flush, whose lock is held already.
        if stream and hasattr(stream, "flush"):
            stream.flush()
    except RecursionError:
        raise
    except Exception:
        handler.handleError(
            logger.makeRecord(logger.name, logging.INFO, "", 0, message, args, None, extra=fields)
        )
    finally:
        if lock is not None:
            lock.release()


def _short_way_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The handler the short way writes `logger`'s line to, or None where it may not."""
    handler = _sole_service_handler(logger)
    if handler is None or not records_are_the_services() or not _logging_as_shipped(logger):
        return None
    return handler


def _sole_service_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The one handler `logger`'s INFO records reach, if it is the service's own, as built,
    and no logger or handler on their way has a filter; else None."""
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if found is not None:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    if (
        type(found) is not logging.StreamHandler
        or found.filters
        or found.level > logging.INFO
        or type(found.formatter) is not ServiceJsonFormatter
        or not found.formatter.as_built()
        or not _METHOD_NAMES.isdisjoint(vars(found))
    ):
        return None
    return found


def _logging_as_shipped(logger: logging.Logger) -> bool:
    """Whether the logger is a plain Logger and the logging module's classes run their own
    methods: none replaced on the class or on the logger."""
    global _unpatched
    if type(logger) is not logging.Logger or not _METHOD_NAMES.isdisjoint(vars(logger)):
        return False
    methods = (*_logger_methods(logging.Logger), *_handler_methods(logging.StreamHandler))
    if methods == _unpatched:
        return True
    # A wrapper copies its function's name and module, never its code's file.
    own = all(
        getattr(getattr(method, "__code__", None), "co_filename", None) == _LOGGING_SOURCE
        for method in methods
    )
    if own:
        _unpatched = methods
    return own
