"""structlog set-up (JSON lines on stdout) and the gateway's few kinds of log event."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

import orjson
import structlog

from proxy.errors import FailureKind

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR

_log = structlog.get_logger("gateway")

_SECRET_PATTERN = re.compile(
    r"(?i)(bearer\s+|x-api-key:\s*|api-key:\s*|x-goog-api-key:\s*|[?&]key=)[^\s'\",&]+"
)


class Redactor(logging.Filter):
    """Scrubs credentials from stdlib records (aiohttp echoes bad header lines in its errors)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()

    def scrub(self, text: str) -> str:
        text = _SECRET_PATTERN.sub(r"\1[redacted]", text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Keep the class name only: exception texts may quote request headers.
            record.msg += f" ({type(record.exc_info[1]).__name__})"
            record.exc_info = None
            record.exc_text = None
        return True


REDACTOR = Redactor()


def configure(level: str = "info", secrets: Iterable[str] = ()) -> None:
    """JSON lines on stdout, one write per event; loggers cached after first use."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.BytesLoggerFactory(file=sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )
    set_secrets(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(REDACTOR)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def set_secrets(secrets: Iterable[str]) -> None:
    REDACTOR.secrets = tuple(s for s in secrets if len(s) >= 4)


def access(**fields: object) -> None:
    _log.info("access", **fields)


def attempt_failed(request_id: str, upstream: str, kind: FailureKind, detail: str) -> None:
    _log.warning(
        "attempt_failed", request_id=request_id, upstream=upstream, failure=kind, detail=detail
    )


def health(upstream: str, transition: str) -> None:
    _log.warning("upstream_" + transition, upstream=upstream)


def event(name: str, **fields: object) -> None:
    _log.info(name, **fields)


def warning(name: str, **fields: object) -> None:
    _log.warning(name, **fields)


def error(name: str, **fields: object) -> None:
    _log.error(name, **fields)
