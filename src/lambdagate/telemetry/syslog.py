"""`telemetry/logging` `syslog: true`: application log lines to the local syslog, as KrakenD's krakend-gologging.

KrakenD writes `LEVEL > message` lines tagged with the prefix to the local syslog socket, with the facility of
`syslog_facility` (local0 to local7, else local3). Access lines never go to syslog (KrakenD's neither). The
socket is written by the shipping thread: a syslog daemon that stops reading makes lines drop (counted), never a
worker wait. `LAMBDAGATE_TEST_SYSLOG_ADDRESS` (host:port, UDP) replaces /dev/log: only tests set it.
"""

from __future__ import annotations

import logging
import os
from logging.handlers import SysLogHandler
from typing import Any

from lambdagate.telemetry.shipper import ReportFilter, Shipper

DEV_LOG = "/dev/log"
TEST_ADDRESS_ENV = "LAMBDAGATE_TEST_SYSLOG_ADDRESS"
FACILITIES = tuple(f"local{n}" for n in range(8))
DEFAULT_FACILITY = "local3"


def facility_of(value: Any) -> tuple[str, str | None]:
    """(facility, warning or None) for `syslog_facility`: KrakenD reads local0…local7 in any case, else local3."""
    if value is None:
        return DEFAULT_FACILITY, None
    if isinstance(value, str) and value.lower() in FACILITIES:
        return value.lower(), None
    return DEFAULT_FACILITY, f"{value!r} is not local0 to local7: local3 is used, as KrakenD does"


def syslog_address() -> str | tuple[str, int] | None:
    """Where syslog lines go: the test address when set, else /dev/log when present, else None."""
    test = os.environ.get(TEST_ADDRESS_ENV)
    if test:
        host, _, port = test.rpartition(":")
        return host, int(port)
    return DEV_LOG if os.path.exists(DEV_LOG) else None


class _Raising(SysLogHandler):
    """SysLogHandler whose failures reach the shipper (counted, reported) instead of a traceback on stderr."""

    def handleError(self, record: logging.LogRecord) -> None:
        raise  # called from SysLogHandler.emit's except block: re-raises what it caught


class SyslogHandler(logging.Handler):
    """Application records to syslog through the shipping thread (the socket write may block, a worker may not)."""

    def __init__(self, address: str | tuple[str, int], facility: str, tag: str) -> None:
        super().__init__()
        self.inner = _Raising(address, facility=SysLogHandler.facility_names[facility])
        self.inner.ident = f"{tag or 'lambdagate'}[{os.getpid()}]: "
        self.inner.setFormatter(logging.Formatter("%(levelname)s > %(message)s"))
        self.shipper = Shipper(f"syslog {address}", self.inner.emit)
        self.addFilter(ReportFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:  # a frozen copy, as logging's QueueHandler makes: the thread formats it later
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:
            self.handleError(record)
            return
        frozen = logging.makeLogRecord(record.__dict__)
        frozen.msg, frozen.args, frozen.exc_info, frozen.exc_text = text, None, None, None
        self.shipper.offer(frozen)

    def close(self) -> None:
        self.shipper.close()
        self.inner.close()
        super().close()
