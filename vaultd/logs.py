"""Log lines on stderr: JSON objects (default) or text, each carrying its call's request id.

The request id lives in a context variable that vaultd.api.observe sets for the length of each
RPC, so every line logged while serving a call (in api, core, storage or a provider) carries it
without being passed around; the audit trail reads the same variable. Nothing here redacts: the
rule that no value, key, token or authorization header is ever logged is kept where lines are
written, which log only ids, names, codes and durations.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["json", "text"]
LogLevel = Literal["debug", "info", "warning", "error"]

REQUEST_ID: ContextVar[str | None] = ContextVar("vaultd_request_id", default=None)
"""The id of the RPC being served in this task, or None outside a call."""

# Attributes every LogRecord has (or a formatter adds); any other attribute came from `extra=`
# and becomes a JSON key.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "request_id",
}


# json.dumps(line, default=str), without building an encoder per line.
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg, pid, request_id, then any extras."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        """ISO 8601 in UTC to the millisecond, as datetime.isoformat writes it; the text of the
        whole second is made once per second, not once per line (every call logs one)."""
        second = int(created)
        if second != self._second:
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            # Which worker wrote the line, when several serve one port.
            "pid": record.process,
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _ENCODER.encode(line)


class TextFormatter(logging.Formatter):
    """For people at a terminal: time, level, logger, pid, request id (or -), message."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s [%(process)d %(request_id)s] %(message)s"
        )

    def format(self, record: logging.LogRecord) -> str:
        record.request_id = REQUEST_ID.get() or "-"
        return super().format(record)


def configure(log_format: LogFormat = "json", level: LogLevel = "info") -> None:
    """Send every logger's lines to stderr in `log_format`, replacing earlier handlers."""
    # What no line shows, so no record needs it: the caller's file and line (a walk up the
    # stack per record), thread and multiprocessing names. The logging HOWTO's "Optimization".
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(handlers=[handler], level=level.upper(), force=True)
