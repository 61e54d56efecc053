"""Logging set-up: plain lines (the default) or one JSON object per line (LOG_FORMAT=json, for a log
collector), each carrying what it happened in: the Telegram update id, the user id, the handler, the HTTP
request id — set by the middlewares in context variables, so every log line inside an update or a request
has them without passing them around."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

UPDATE_ID: ContextVar[int | None] = ContextVar("log_update_id", default=None)
USER_ID: ContextVar[int | None] = ContextVar("log_user_id", default=None)
HANDLER: ContextVar[str | None] = ContextVar("log_handler", default=None)
REQUEST_ID: ContextVar[str | None] = ContextVar("log_request_id", default=None)
FIELDS = {"update_id": UPDATE_ID, "user_id": USER_ID, "handler": HANDLER, "request_id": REQUEST_ID}


class Context(logging.Filter):
    """Puts the context variables on every record (None outside an update or request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in FIELDS.items():
            setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        where = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, None) is not None)
        return f"{line} [{where}]" if where else line


def configure(level: str = "INFO", fmt: str = "text", stream=None) -> None:
    handler = logging.StreamHandler(stream)
    handler.addFilter(Context())
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run is noise
