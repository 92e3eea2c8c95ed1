"""KrakenD's HTTP server keys at the service's top level: which lambdagate limits they set, and what differs.

`read_timeout`, `read_header_timeout`, `idle_timeout` and `max_header_bytes` set the `lambdagate/server` limits of
the same names, `max_shutdown_wait_time` its `shutdown_grace` (config/server_options.py says which wins when both
are given); `listen_ip` is the address `lambdagate run` binds (its `--host` wins); `tls` is config/server_tls.py's.
`use_h2c`, `plugin` and `async_agent` are accepted with a warning saying what lambdagate does instead.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from lambdagate.errors import ConfigIssue

if TYPE_CHECKING:
    from lambdagate.config.model import ServiceConfig

# KrakenD's top-level server key → the lambdagate/server option it sets when that namespace does not.
TOP_LEVEL_OPTIONS = {
    "read_timeout": "read_timeout",
    "read_header_timeout": "read_header_timeout",
    "idle_timeout": "idle_timeout",
    "max_header_bytes": "max_header_bytes",
    "max_shutdown_wait_time": "shutdown_grace",
}
TOP_LEVEL_LIMITS = tuple(TOP_LEVEL_OPTIONS)
# Where lambdagate listens when neither `run --host` nor `listen_ip` says (KrakenD's default: every address).
DEFAULT_LISTEN_IP = "0.0.0.0"


def listen_host(service: ServiceConfig, flag: str | None) -> str:
    """The address to bind: `run --host` when given, else the config's listen_ip, else every address."""
    return flag or service.listen_ip or DEFAULT_LISTEN_IP


def top_level_errors(service: ServiceConfig) -> list[ConfigIssue]:
    """KrakenD refuses to start with these too."""
    if service.listen_ip:
        try:
            ipaddress.ip_address(service.listen_ip)
        except ValueError:
            return [ConfigIssue("listen_ip", f'{service.listen_ip!r} is no IP address: write one, e.g. "127.0.0.1"')]
    return []


def top_level_issues(service: ServiceConfig) -> list[ConfigIssue]:
    """Warnings about KrakenD's top-level server keys that lambdagate applies differently."""
    out = []
    if service.write_timeout is not None:
        out.append(
            ConfigIssue(
                "write_timeout",
                "accepted, not applied: lambdagate has no limit on the whole writing of a reply; a reply over 1 MiB "
                "that the client stops reading is dropped after lambdagate/server send_timeout (30s)",
            )
        )
    for name in TOP_LEVEL_LIMITS:
        value = getattr(service, name)
        # max_header_bytes 0 is Go's default size in KrakenD: lambdagate's default then, without a word.
        if value is not None and value <= 0 and name != "max_header_bytes":
            out.append(ConfigIssue(name, f"{value:g}s (no limit in KrakenD) keeps lambdagate's default limit"))
    out.extend(_unserved_keys(service))
    return out


def _unserved_keys(service: ServiceConfig) -> list[ConfigIssue]:
    out = []
    if service.use_h2c:
        out.append(
            ConfigIssue(
                "use_h2c",
                "accepted, not applied: lambdagate serves HTTP/1.1 in cleartext (HTTP/2 only with tls), since "
                "waiting to detect HTTP/2 would hold silent connections without a timeout",
            )
        )
    if service.plugin is not None:
        out.append(
            ConfigIssue(
                "plugin",
                "accepted, nothing is loaded: lambdagate cannot load KrakenD's Go plugins (a plugin/* namespace that "
                "guards requests is refused where it is used, the others are warned about)",
            )
        )
    if service.async_agent:
        out.append(
            ConfigIssue(
                "async_agent",
                f"not supported: the {len(service.async_agent)} async agent(s) are not started and their queues "
                "are not consumed; the endpoints are served",
            )
        )
    return out
