"""Command line: `lambdagate run | check | version | functions serve`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections import Counter
from typing import TYPE_CHECKING

from lambdagate import __version__, plugins
from lambdagate.config import LoadedConfig, LoadOptions, guards, is_typed_backend, load_config, server_options
from lambdagate.config.flexible import FlexibleConfig
from lambdagate.config.loader import load_rendered, render_flexible
from lambdagate.config.server_keys import listen_host
from lambdagate.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from lambdagate.supervisor import ConfigSnapshots


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lambdagate", description="KrakenD-compatible API gateway for AWS Lambda and HTTP services"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = _run_parser(sub)
    check = sub.add_parser("check", help="validate a config and summarise it")
    check.add_argument("-c", "--config", required=True)
    check.add_argument("--functions", metavar="DIR", help="validate as `run --functions DIR` would")
    for command in (run, check):
        command.add_argument(
            "--allow-unsupported",
            metavar="NAMESPACE",
            action="append",
            type=_allowed_guard,
            default=[],
            help="serve the endpoints that a guard lambdagate does not implement (e.g. "
            "auth/api-keys) protects WITHOUT that protection, with a warning, "
            "instead of refusing the config; repeatable",
        )
        _flexible_flags(command)
    check.add_argument("--out", dest="fc_out", metavar="PATH", help="same as --fc-out; - prints the rendered config")
    sub.add_parser("version", help="print the version")
    functions = sub.add_parser("functions", help="the local Lambda runtime")
    fsub = functions.add_subparsers(dest="functions_command", required=True)
    serve = fsub.add_parser("serve", help="serve Lambda's Invoke API for the Python handlers in DIR")
    serve.add_argument("directory", metavar="DIR")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9001)
    serve.add_argument(
        "--show-env",
        action="store_true",
        help="show environment values in list-functions/get-function (default: redacted)",
    )
    return parser


def _run_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    run = sub.add_parser("run", help="serve a config")
    run.add_argument("-c", "--config", required=True, help="krakend.json / .yaml")
    run.add_argument("-p", "--port", type=int, help="listen port (default: the config's port, else 8080)")
    run.add_argument("--host", help="listen address (default: the config's listen_ip, else 0.0.0.0)")
    run.add_argument("-w", "--workers", type=int, default=1, help="worker processes sharing the port (default 1)")
    run.add_argument("-d", "--debug", action="store_true", help="debug logs and the /__echo/ endpoint")
    run.add_argument(
        "--log-format",
        choices=("text", "json", "logstash"),
        help="log lines as text, JSON or KrakenD's logstash records (default: the config's telemetry/logging "
        "format, else text)",
    )
    run.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        type=str.upper,
        help="default: the config's telemetry/logging level, else INFO",
    )
    run.add_argument("--no-access-log", action="store_true", help="do not log one line per request")
    run.add_argument(
        "--watch",
        action="store_true",
        help="reload the config when the file changes (SIGHUP does too); "
        "an invalid config is refused and the old one keeps serving",
    )
    run.add_argument(
        "--functions",
        metavar="DIR",
        help="start the local Lambda runtime for the handlers in DIR and "
        "send every Lambda backend without an explicit endpoint to it",
    )
    return run


def _flexible_flags(command: argparse.ArgumentParser) -> None:
    """KrakenD's flexible configuration switches; each flag overrides its FC_* environment variable."""
    group = command.add_argument_group("templated configs (KrakenD flexible configuration)")
    group.add_argument("--fc-enable", action="store_true", help="render the config as a template (FC_ENABLE)")
    for name, env, what in (
        ("settings", "FC_SETTINGS", "folder of NAME.json files, each the template's .NAME"),
        ("partials", "FC_PARTIALS", "folder of files that `include` inserts verbatim"),
        ("templates", "FC_TEMPLATES", "folder of *.tmpl files that `template` runs"),
        ("out", "FC_OUT", "write the rendered config to this file"),
        ("env-allow", "FC_ENV_ALLOW", "regular expression of the variable names `env` may read (default: all)"),
    ):
        group.add_argument(
            f"--fc-{name}", metavar="DIR" if name not in ("out", "env-allow") else "VALUE", help=f"{what} ({env})"
        )


def _flexible(args: argparse.Namespace) -> FlexibleConfig | None:
    flags = {k: getattr(args, f"fc_{k}", None) for k in ("settings", "partials", "templates", "out", "env_allow")}
    if getattr(args, "fc_enable", False) or any(v is not None for v in flags.values()):
        return FlexibleConfig.from_environ({**os.environ, "FC_ENABLE": "1"}, **flags)
    return FlexibleConfig.from_environ(os.environ)


def _allowed_guard(value: str) -> str:
    try:
        return guards.allowed_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load_options(args: argparse.Namespace, local_lambda_endpoint: str | None) -> LoadOptions:
    return LoadOptions(
        local_lambda_endpoint=local_lambda_endpoint,
        allow_unsupported=frozenset(args.allow_unsupported),
        flexible=_flexible(args),
    )


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `lambdagate check ... | head`: the reader is gone; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None = None) -> int:
    plugins.install()
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"lambdagate {__version__}")
        return 0
    if args.command == "check":
        return _check(args)
    if args.command == "run":
        return _run(args)
    if args.command == "functions":
        from lambdagate.local_runtime import main as runtime_main

        return (
            runtime_main(
                [args.directory, "--host", args.host, "--port", str(args.port)]
                + (["--show-env"] if args.show_env else [])
            )
            or 0
        )
    return 2


def _print_errors(path: str, exc: ConfigError) -> None:
    print(f"{path}: {len(exc.issues)} error(s)", file=sys.stderr)
    for issue in exc.issues:
        print(f"  error: {issue}", file=sys.stderr)


def _check(args: argparse.Namespace) -> int:
    options = _load_options(args, "http://127.0.0.1:0" if args.functions else None)
    try:
        loaded = _checked_config(args.config, options)
    except ConfigError as exc:
        _print_errors(args.config, exc)
        return 1
    service = loaded.service
    kinds: Counter[str] = Counter()
    for endpoint in service.endpoints:
        for backend in endpoint.backend:
            kinds["+".join(backend.namespaces) if is_typed_backend(backend) else "http"] += 1
    print(
        f"{args.config}: OK — {len(service.endpoints)} endpoint(s), port {service.port}, timeout {service.timeout:g}s"
    )
    for endpoint in service.endpoints:
        names = ", ".join("+".join(b.namespaces) if is_typed_backend(b) else "http" for b in endpoint.backend)
        print(f"  {endpoint.method:7} {endpoint.endpoint}  → {len(endpoint.backend)} backend(s): {names}")
    if kinds:
        print("  backends: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    telemetry = _telemetry_summary(service)
    if telemetry:
        print(f"  telemetry: {telemetry}")
    for warning in loaded.warnings:
        print(f"  warning: {warning}")
    return 0


def _checked_config(path: str, options: LoadOptions) -> LoadedConfig:
    """The config as `check` reads it; a templated config is printed first when asked (`--out -`)."""
    if options.flexible is None or options.flexible.out != "-":
        return load_config(path, options)
    text = render_flexible(path, options)
    print(text, end="" if text.endswith("\n") else "\n")
    return load_rendered(text, options, path)


def _telemetry_summary(service) -> str:
    from lambdagate.telemetry.gelf import gelf_options
    from lambdagate.telemetry.logs import logging_options as read_logging_options
    from lambdagate.telemetry.metrics import metrics_options
    from lambdagate.telemetry.tracing import tracing_options

    parts = []
    logging_options = read_logging_options(service)
    if logging_options is not None:
        parts.append(
            f"logs {logging_options.level}{' JSON' if logging_options.format == 'logstash' else ''}"
            f" to {'stdout' if logging_options.stdout else 'stderr'}"
        )
    gelf = gelf_options(service)
    if gelf is not None:
        parts.append(f"GELF over {'TCP' if gelf.enable_tcp else 'UDP'} to {gelf.address}")
    metrics = metrics_options(service)
    if metrics is not None:
        parts.append(f"metrics on {metrics.url}")
    tracing = tracing_options(service)
    if tracing is not None:
        parts.append(f"traces sampled at {tracing.trace_sample_rate:g}")
    return ", ".join(parts)


def _run(args: argparse.Namespace) -> int:
    first = _read_and_configure_logs(args)
    if first is None:
        return 1
    loaded_first, settings = first
    log = logging.getLogger("lambdagate")
    open_files = _raise_open_files_limit(log)  # before anything starts: the workers and the runtime inherit it
    port = args.port if args.port is not None else loaded_first.service.port
    args.host = listen_host(loaded_first.service, args.host)  # --host, else listen_ip, else 0.0.0.0
    busy = _port_in_use(args.host, port)
    if busy:
        # granian shares its port (SO_REUSEPORT): a second gateway on it would silently get half the traffic.
        log.error("cannot listen on %s:%d: %s; stop the other server or choose another --port", args.host, port, busy)
        return 1
    with contextlib.ExitStack() as cleanup:
        runtime = None
        if args.functions:
            runtime = _start_local_runtime(args.functions, settings)
            if runtime is None:
                return 1
            cleanup.callback(runtime.stop)
        local_endpoint = runtime.url if runtime is not None else None
        from lambdagate.supervisor import ConfigSnapshots, MetricsListener, serve

        snapshots = ConfigSnapshots(args.config, _load_options(args, local_endpoint))
        cleanup.callback(snapshots.cleanup)
        try:
            loaded = snapshots.take()
        except ConfigError as exc:
            _print_errors(args.config, exc)
            return 1
        _prepare_workers(args, loaded.warnings, snapshots, local_endpoint, log)
        tls = _serving_tls(loaded.service, log)
        if tls is False:
            return 1
        if tls is not None:
            cleanup.callback(tls.cleanup)
        connections = _connection_cap(loaded.service, open_files, log)
        try:
            metrics = MetricsListener.start(loaded.service)
        except OSError as exc:
            log.error('cannot open the metrics listener (extra_config["telemetry/metrics"].listen_address): %s', exc)
            return 1
        if metrics is not None:
            cleanup.callback(metrics.stop)
        _say_listening(args, loaded.service, port, connections, tls, log)
        serve(
            snapshots,
            loaded,
            host=args.host,
            port=port,
            workers=args.workers,
            watch=args.watch,
            connections=connections,
            tls=tls,
        )
    return 0


def _say_listening(args: argparse.Namespace, service, port: int, connections: int, tls, log: logging.Logger) -> None:
    telemetry = _telemetry_summary(service)
    log.info(
        "lambdagate %s listening on %s:%d%s with %d worker(s) of up to %d connections%s%s",
        __version__,
        args.host,
        port,
        "" if tls is None else " over HTTPS" + (" with mutual TLS" if tls.mutual else ""),
        args.workers,
        connections,
        "; watching the config for changes" if args.watch else "",
        f"; {telemetry}" if telemetry else "",
    )


def _serving_tls(service, log: logging.Logger):
    """The service's TLS checked and ready for granian; None for plain HTTP, False when it cannot be served."""
    from lambdagate.errors import StartupError
    from lambdagate.tls import prepare_tls

    try:
        return prepare_tls(service.tls)
    except StartupError as exc:
        log.error("cannot serve HTTPS: %s", exc)
        return False


def _prepare_workers(
    args: argparse.Namespace,
    warnings: list[ConfigIssue],
    snapshots: ConfigSnapshots,
    local_endpoint: str | None,
    log: logging.Logger,
) -> None:
    """Say the config's warnings once, here rather than once per worker, and hand the workers what they read from
    the environment (debug mode, the local runtime's address, the --allow-unsupported list)."""
    for warning in warnings:
        log.warning("config %s", warning)
    if local_endpoint:
        log.info(
            "local Lambda runtime for %s at %s: Lambda backends without an explicit endpoint use it",
            args.functions,
            local_endpoint,
        )
    os.environ["LAMBDAGATE_DEBUG"] = "1" if args.debug else "0"
    os.environ["LAMBDAGATE_LOCAL_LAMBDA_ENDPOINT"] = local_endpoint or ""
    os.environ[guards.ALLOW_ENV] = guards.allow_list_to_env(snapshots.options.allow_unsupported)  # workers too


def _read_and_configure_logs(args: argparse.Namespace):
    """A first read of the config, for how to log (the embedded runtime logs the same way) and to fail before
    starting anything: (loaded config, log settings), or None when it is invalid (said on stderr)."""
    from lambdagate.telemetry.gelf import gelf_options
    from lambdagate.telemetry.logs import LogSettings, logging_options
    from lambdagate.telemetry.logs import configure as configure_logs

    configure_logs(LogSettings.resolve(None, log_format=args.log_format, level=args.log_level, debug=args.debug))
    try:
        first = load_config(args.config, _load_options(args, "http://127.0.0.1:0" if args.functions else None))
    except ConfigError as exc:
        _print_errors(args.config, exc)
        return None
    settings = LogSettings.resolve(
        logging_options(first.service),
        log_format=args.log_format,
        level=args.log_level,
        debug=args.debug,
        access=not args.no_access_log,
        gelf=gelf_options(first.service),
    )
    configure_logs(settings)
    os.environ.update(settings.to_env())  # the workers log the same way
    return first, settings


def _start_local_runtime(directory: str, settings):
    """The embedded local Lambda runtime for the handlers in `directory`, or None (said on stderr)."""
    from lambdagate.local_runtime import ConfigError as FunctionsError
    from lambdagate.local_runtime import start_in_background

    try:
        return start_in_background(
            directory,
            host="127.0.0.1",
            port=0,
            log_format=settings.format,
            log_level=settings.level,
            log_prefix=settings.prefix,
        )
    except (FunctionsError, RuntimeError, TimeoutError) as exc:
        print(f"{directory}: cannot start the local Lambda runtime: {exc}", file=sys.stderr)
        return None


def _raise_open_files_limit(log) -> int:
    """Raise the soft descriptor limit to the hard one and log it; returns the limit now."""
    from lambdagate.supervisor import open_files_limit

    before, now = open_files_limit()
    log.info("open files limit: %d%s", now, f" (raised from {before})" if now != before else "")
    return now


def _connection_cap(service, open_files: int, log) -> int:
    """Connections per worker: max_connections, lower when the descriptor limit needs it (logged)."""
    from lambdagate.supervisor import connection_cap

    wanted = server_options(service).max_connections
    cap = connection_cap(wanted, open_files)
    if cap < wanted:
        log.warning(
            "each worker accepts at most %d connections, not max_connections %d: the open files limit "
            "(%d) keeps room for backend connections",
            cap,
            wanted,
            open_files,
        )
    return cap


def _port_in_use(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on (another server has it), or None when it is free."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine; a listener is not
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None
