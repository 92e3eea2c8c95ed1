"""The main process of `lambdagate run`: granian's workers, config reloads and the shutdown grace period.

Workers never read the user's file directly: they load a *snapshot* that this process has validated. A reload
(SIGHUP, or a change seen by `--watch`) validates the file again; an invalid config is refused with the same
messages as `check` and the old snapshot keeps serving. A valid one becomes the new snapshot and granian
respawns the workers one by one; old workers finish their in-flight requests within the grace period.

A worker that dies is respawned (workers.py). At start-up the soft descriptor limit is raised to the hard one,
and each worker accepts at most `connection_cap` connections so that it never runs out of descriptors.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from lambdagate.config import LoadedConfig, LoadOptions, load_config, server_options
from lambdagate.config.loader import load_rendered, render_flexible, rendered_suffix
from lambdagate.config.model import ServiceConfig
from lambdagate.config.server_options import ServerOptions
from lambdagate.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from lambdagate.tls import ServingTLS
    from lambdagate.workers import SupervisedServer

log = logging.getLogger("lambdagate")
# Read by this process at start (where logs go, the metrics listener): a reload cannot change them.
RESTART_ONLY = ("telemetry/logging", "telemetry/metrics")
WORKER_APP = "lambdagate.server:app_from_env"
BACKLOG = 2048  # the kernel's accept queue, shared by all workers
# Descriptors a worker keeps for itself: its backend connection pool (server.py's TCPConnector limit, 1024) and
# its own files (logs, metrics, the event loop).
DESCRIPTOR_RESERVE = 1024 + 128


class ConfigSnapshots:
    """Validated copies of the config file, in a private directory removed at exit.

    Reloads may overlap (SIGHUP and --watch see the same edit): `take` is serialised, and the last few snapshots are
    kept, so a worker still being respawned from the previous one never finds its file gone.
    """

    KEEP = 3

    def __init__(self, source: str, options: LoadOptions) -> None:
        self.source = Path(source).resolve()
        self.options = options
        self.directory = Path(tempfile.mkdtemp(prefix="lambdagate-config-"))
        self.generation = 0
        self.current: Path | None = None
        self._taken: list[Path] = []
        self.lock = threading.RLock()  # RLock: a SIGHUP handler may interrupt the main thread inside take()

    def take(self) -> LoadedConfig:
        """Validate the file as it is now; on success it becomes the current snapshot. Raises ConfigError."""
        with self.lock:
            return self._take()

    def _take(self) -> LoadedConfig:
        self.generation += 1
        if self.options.flexible is not None:
            # A templated config is rendered here, once; the snapshot (what workers load) is the rendered JSON.
            snapshot = self.directory / f"{self.generation}{rendered_suffix(self.options)}"
            loaded = self._rendered(snapshot)
        else:
            snapshot = self.directory / f"{self.generation}{self.source.suffix}"
            loaded = self._copied(snapshot)
        loaded.source = str(self.source)
        self.current = snapshot
        self._taken.append(snapshot)
        while len(self._taken) > self.KEEP:
            self._taken.pop(0).unlink(missing_ok=True)
        return loaded

    def _copied(self, snapshot: Path) -> LoadedConfig:
        try:
            shutil.copyfile(self.source, snapshot)
        except OSError as exc:
            raise ConfigError(
                [ConfigIssue("", f"cannot read config file {str(self.source)!r}: {exc.strerror}")]
            ) from None
        try:
            return load_config(snapshot, self.options)
        except ConfigError:
            snapshot.unlink(missing_ok=True)
            raise

    def _rendered(self, snapshot: Path) -> LoadedConfig:
        text = render_flexible(self.source, self.options)
        loaded = load_rendered(text, self.options, self.source)
        snapshot.write_text(text, encoding="utf-8")
        return loaded

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class MetricsListener:
    """`telemetry/metrics`: the workers write snapshots into a private directory; this process serves their sum
    on its own listener, never on the API's port."""

    def __init__(self, directory: str, server) -> None:
        self.directory = directory
        self.server = server

    @classmethod
    def start(cls, service) -> MetricsListener | None:
        from lambdagate.telemetry.metrics import MetricsExporter, metrics_options

        options = metrics_options(service)
        if options is None:
            return None
        host, port = options.address
        directory = tempfile.mkdtemp(prefix="lambdagate-metrics-")
        try:
            server = MetricsExporter(directory).serve(host, port)
        except OSError:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        os.environ["LAMBDAGATE_METRICS_DIR"] = directory  # where the workers write
        log.info("metrics on %s", options.url)
        return cls(directory, server)

    def stop(self) -> None:
        self.server.shutdown()
        shutil.rmtree(self.directory, ignore_errors=True)


def open_files_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit (workers inherit it): (before, now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:  # Linux refuses an infinite descriptor limit: use the kernel's ceiling
        try:
            target = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft


def connection_cap(max_connections: int, open_files: int) -> int:
    """Connections one worker accepts at most: `max_connections`, less when the descriptor limit needs room for
    the worker's own files and backend connections (half the limit at most, so that a tiny limit still serves)."""
    if open_files == resource.RLIM_INFINITY:
        return max_connections
    reserve = min(DESCRIPTOR_RESERVE, open_files // 2)
    return max(1, min(max_connections, open_files - reserve))


def build_server(
    target: str,
    *,
    host: str,
    port: int,
    workers: int,
    options: ServerOptions,
    connections: int,
    tls: ServingTLS | None = None,
) -> SupervisedServer:
    """The granian server for the ASGI factory `target` ("module:function"), with our limits and supervision;
    HTTPS (and mutual TLS) when `tls` is given."""
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    from lambdagate.telemetry.logs import granian_log_config
    from lambdagate.workers import SupervisedServer

    # hyper has one timer per connection: from accept, or from the end of the previous reply, to the end of the
    # next request head. It is the smaller of the two limits, so each one holds.
    head_timeout = min(options.read_header_timeout, options.idle_timeout)
    return SupervisedServer(
        target,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        # HTTP/1 only: in "auto" mode the HTTP/2 detection waits for a first byte without any timeout, so a
        # connection that sends nothing was never closed. (KrakenD serves no cleartext HTTP/2 by default either.)
        http=HTTPModes.http1,
        websockets=False,
        log_access=False,
        runtime_threads=1,
        backlog=BACKLOG,
        # Each worker accepts at most this many connections; past it, new ones wait in the kernel's accept
        # queue (no descriptor spent) until a connection closes, rather than the worker running out of files.
        backpressure=connections,
        log_level=LogLevels(os.environ.get("LAMBDAGATE_LOG_LEVEL", "INFO").lower()),
        log_dictconfig=granian_log_config(),
        http1_settings=HTTP1Settings(header_read_timeout=max(1, int(head_timeout * 1000))),
        workers_kill_timeout=max(1, math.ceil(options.shutdown_grace)),
        respawn_interval=2.0,
        **(tls.granian_options() if tls is not None else {}),
    )


def serve(
    snapshots: ConfigSnapshots,
    loaded: LoadedConfig,
    *,
    host: str,
    port: int,
    workers: int,
    watch: bool,
    connections: int,
    tls: ServingTLS | None = None,
) -> None:
    options = server_options(loaded.service)
    os.environ["LAMBDAGATE_CONFIG"] = str(snapshots.current)
    server = build_server(
        WORKER_APP, host=host, port=port, workers=workers, options=options, connections=connections, tls=tls
    )
    reloading = threading.RLock()  # RLock: a second SIGHUP may arrive while the main thread reloads

    def reload(reason: str) -> None:
        with reloading:  # SIGHUP and --watch may fire for the same edit: one reload at a time
            _reload(reason)

    def _reload(reason: str) -> None:
        try:
            new = snapshots.take()
        except ConfigError as exc:
            log.error("reload (%s) refused, the previous config keeps serving: %d error(s)", reason, len(exc.issues))
            for issue in exc.issues:
                log.error("  error: %s", issue)
            return
        except Exception as exc:
            log.error("reload (%s) refused, the previous config keeps serving: %s: %s", reason, type(exc).__name__, exc)
            return
        for warning in new.warnings:  # as at start: e.g. the endpoints --allow-unsupported serves without a guard
            log.warning("config %s", warning)
        for what in restart_only_changes(loaded.service, new.service):
            log.warning("reload (%s): %s changed; it applies at the next restart", reason, what)
        os.environ["LAMBDAGATE_CONFIG"] = str(snapshots.current)  # what respawned workers will load
        log.info("reload (%s): config is valid, respawning workers", reason)
        server.signal_handler_reload()

    def install_handlers() -> None:
        # granian installs its own SIGHUP handler (respawn without checking); ours validates first.
        signal.signal(signal.SIGHUP, lambda *_: reload("SIGHUP"))
        if watch:
            folders = snapshots.options.flexible.folders() if snapshots.options.flexible else []
            thread = threading.Thread(target=_watch, args=(snapshots.source, folders, reload), name="config-watch")
            thread.daemon = True
            thread.start()

    server.on_startup(install_handlers)
    server.serve()


def _watch(path: Path, folders: list[Path], reload) -> None:
    """Reload when the config file changes, or anything in a templated config's folders (settings, partials,
    templates). A failure never ends the watch: it is logged and the next change is watched for."""
    import watchfiles

    # Watch the directory: editors often replace the file rather than write it in place.
    for changes in watchfiles.watch(path.parent, *folders, debounce=300, raise_interrupt=False):
        try:
            if any(_concerns(Path(changed).resolve(), path, folders) for _, changed in changes):
                reload("file changed")
        except Exception:
            log.exception("reload (file changed) failed; still watching the config for changes")


def _concerns(where: Path, path: Path, folders: list[Path]) -> bool:
    return where == path or any(where.is_relative_to(folder) for folder in folders)


def restart_only_changes(old: ServiceConfig, new: ServiceConfig) -> list[str]:
    """What a reload cannot apply (the main process owns the listener, the log outputs and the metrics listener)."""
    changed = [ns for ns in RESTART_ONLY if new.namespaces.get(ns) != old.namespaces.get(ns)]
    for key in ("tls", "port", "listen_ip"):
        if getattr(new, key, None) != getattr(old, key, None):
            changed.append(key)
    return changed
