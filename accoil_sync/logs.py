"""Logging: human lines on a terminal, JSON lines otherwise (or on request); run id on every line; secrets
replaced by a mask wherever they would appear."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime

run_id_var: ContextVar[str | None] = ContextVar("run_id", default=None)
MASK = "**********"
_STD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class _Redactor(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so that a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = run_id_var.get()
        if self.secrets:
            record.msg = self.redact(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "run_id": getattr(record, "run_id", None),
            "message": record.getMessage(),
        }
        data.update({k: v for k, v in record.__dict__.items() if k not in _STD_ATTRS and k != "run_id"})
        if record.exc_text:
            data["exception"] = record.exc_text
        elif record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        run = getattr(record, "run_id", None)
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{stamp} {record.levelname:<7} {f'[{run}] ' if run else ''}{record.getMessage()}"
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


# What the last ``setup`` was given (the format resolved), so a child process can log the same way.
current: tuple[str, str, tuple[str, ...]] = ("INFO", "json", ())


def setup(level: str = "INFO", fmt: str = "auto", secrets: Iterable[str] = (), stream: object = None) -> None:
    global current
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "human" if getattr(out, "isatty", lambda: False)() else "json"
    secrets = tuple(secrets)
    current = (str(level), fmt, secrets)
    handler = logging.StreamHandler(out)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    handler.addFilter(_Redactor(secrets))
    root = logging.getLogger("accoil_sync")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    # Third-party loggers (httpx logs every URL at INFO) go through the same redacting handler.
    for name in ("httpx", "httpcore", "uvicorn"):
        other = logging.getLogger(name)
        for old in list(other.handlers):
            other.removeHandler(old)
        other.addHandler(handler)
        other.setLevel(max(logging.getLevelName(level), logging.WARNING) if name == "httpcore" else level)
        other.propagate = False
