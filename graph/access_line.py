"""The access line of a request, written straight to the service's own handler when it may be.

Every request writes one line (graph.request_log). Made the logging module's way — a
LogRecord, the record factory, the loggers' and handler's calls, python-json-logger's
formatting — that line cost a sixth of a point read's instructions (issue 14, counted
under callgrind: 123 000 of 724 000). So when the access logger's records would reach one
handler only, and that handler is the one `serve` configures (graph.logs.logging_config:
a plain StreamHandler with ServiceJsonFormatter) with nothing that could filter or add to
a record on the way, the line is made by that formatter from the values themselves and
written as the handler writes, under its lock. Any other configuration — another handler
or a second one, a filter, a handler level above INFO, another record factory — takes the
logging module's way, so the logging configuration is honoured either way, and the line
is the same: tests/graph/test_access_line.py compares the two.
"""

import logging
import time
from typing import Any

from graph.logs import ServiceJsonFormatter, current_request_id, records_are_the_services


def log_access(
    logger: logging.Logger, message: str, args: tuple[Any, ...], fields: dict[str, Any]
) -> None:
    """`logger.info(message, *args, extra=fields)`, the short way where it is the same."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _sole_service_handler(logger)
    if handler is None or not records_are_the_services():
        logger.info(message, *args, extra=fields)
        return
    formatter = handler.formatter
    assert isinstance(formatter, ServiceJsonFormatter)
    request_id = current_request_id.get()
    # The record factory's field comes first, as it is set before the record's extras.
    own_fields = {"request_id": request_id, **fields} if request_id else fields
    line = formatter.line("INFO", logger.name, message % args, own_fields, time.time())
    # StreamHandler.emit, under the lock Handler.handle takes around it.
    handler.acquire()
    try:
        handler.stream.write(line + handler.terminator)
        handler.flush()
    except RecursionError:
        raise
    except Exception:
        handler.handleError(
            logger.makeRecord(logger.name, logging.INFO, "", 0, message, args, None, extra=fields)
        )
    finally:
        handler.release()


def _sole_service_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The one handler `logger`'s INFO records reach, if it is the service's own and no
    logger or handler on their way has a filter; else None."""
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
    ):
        return None
    return found
