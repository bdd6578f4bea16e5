"""Logging: human lines on a terminal, JSON lines otherwise (or on request); run id on every line; secrets
replaced by a mask wherever they would appear."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

run_id_var: ContextVar[str | None] = ContextVar("run_id", default=None)
MASK = "**********"
_STD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


MIN_SECRET = 4  # shorter values would mask ordinary words
MIN_PART = 8  # a URL's path segment or query value that is masked on its own


def secret_forms(secret: str) -> set[str]:
    """Every form a secret can take in a log line: as given, percent-encoded (``quote`` and
    ``quote_plus``, with or without ``/``), and for a URL (a webhook's token is its path) the path and
    query without the host (hosts are lower-cased on the way out) and each path segment or query value
    long enough to be a token."""
    forms = {secret}
    for encoded in (quote(secret, safe=""), quote(secret), quote_plus(secret), quote_plus(secret, safe="/")):
        forms.add(encoded)
    parsed = urlsplit(secret) if "://" in secret else None
    if parsed is not None and parsed.netloc:
        tail = parsed.path + (f"?{parsed.query}" if parsed.query else "")
        if len(tail.strip("/")) >= MIN_PART:
            forms.add(tail)
        parts = [p for p in parsed.path.split("/") if p]
        parts += [v for _, v in parse_qsl(parsed.query)]
        if parsed.password:
            parts.append(parsed.password)
        for part in parts:
            if len(part) >= MIN_PART and (any(c.isdigit() for c in part) or len(part) >= 16):
                forms |= {part, quote(part, safe="")}
    return {f for f in forms if len(f) >= MIN_SECRET}


class Redactor:
    """Replaces every form of every secret with the mask, case-insensitively (hex escapes and hosts
    change case on the way to a log line)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {f for s in secrets if len(s) >= MIN_SECRET for f in secret_forms(s)}
        # Longest first, so that a secret containing another is masked whole.
        ordered = sorted(forms, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE) if ordered else None

    def __call__(self, text: str) -> str:
        return text if self.pattern is None else self.pattern.sub(MASK, text)


_redactor = Redactor(())


def redact(text: str) -> str:
    """``text`` with the secrets the logging was set up with masked (for messages that leave the process
    another way: alerts, error output)."""
    return _redactor(text)


class _Redactor(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = run_id_var.get()
        if self.redact.pattern is not None:
            record.msg = self.redact(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
            for key, value in list(record.__dict__.items()):  # structured extras reach the JSON lines too
                if key not in _STD_ATTRS and isinstance(value, str):
                    setattr(record, key, self.redact(value))
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


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged: the progress bars (rich) replace it while
    they are drawn and print each line above them; a stream fixed at start-up wrote into the bars."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


# What the last ``setup`` was given (the format resolved), so a child process can log the same way.
current: tuple[str, str, tuple[str, ...]] = ("INFO", "json", ())


def setup(level: str = "INFO", fmt: str = "auto", secrets: Iterable[str] = (), stream: object = None) -> None:
    global current, _redactor
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "human" if getattr(out, "isatty", lambda: False)() else "json"
    secrets = tuple(secrets)
    current = (str(level), fmt, secrets)
    _redactor = Redactor(secrets)
    handler = logging.StreamHandler(out) if stream is not None else _StderrHandler()  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    handler.addFilter(_Redactor(secrets))
    root = logging.getLogger("accoil_sync")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    # Third-party loggers go through the same redacting handler. httpx logs every request at INFO (its URL
    # may carry an email): one line per request belongs at DEBUG, so below DEBUG only its warnings pass.
    numeric = logging.getLevelName(level) if isinstance(level, str) else level
    for name in ("httpx", "httpcore", "uvicorn"):
        other = logging.getLogger(name)
        for old in list(other.handlers):
            other.removeHandler(old)
        other.addHandler(handler)
        quiet = name == "httpcore" or (name == "httpx" and numeric > logging.DEBUG)
        other.setLevel(max(numeric, logging.WARNING) if quiet else numeric)
        other.propagate = False
