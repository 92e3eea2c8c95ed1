"""Command line: ``python -m lambdagate.local_runtime DIR [--host H] [--port N] [--show-env]``.

``main(argv)`` is also what ``lambdagate functions serve DIR ...`` calls.
"""

from __future__ import annotations

import argparse
import logging
import sys


def build_parser(prog: str = "python -m lambdagate.local_runtime") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the Python Lambda handlers in DIR over Lambda's Invoke API "
        "(use it with boto3 or the AWS CLI via --endpoint-url).",
    )
    parser.add_argument("directory", metavar="DIR", help="directory of NAME.py handlers (+ functions.yaml)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9001, help="port to listen on (default 9001)")
    parser.add_argument("--region", default=None, help="region in ARNs and AWS_REGION (default from env or us-east-1)")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="default INFO",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json", "logstash"),
        help="log lines as text or one JSON object per line (default text)",
    )
    parser.add_argument("--log-prefix", default="", help="put before every log line (as telemetry/logging's prefix)")
    parser.add_argument(
        "--show-env",
        action="store_true",
        help="show environment values in list-functions/get-function (default: redacted)",
    )
    # Set by start_in_background(): shut down when the embedding process is gone.
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv`` (default sys.argv[1:]) and serve until interrupted; returns the exit status."""
    args = (build_parser(prog) if prog else build_parser()).parse_args(argv)
    from lambdagate.telemetry.logs import LogSettings, configure

    # The gateway's own line format, so an embedded runtime's lines read like the gateway's (and parse in JSON).
    configure(LogSettings(format=args.log_format, level=args.log_level, prefix=args.log_prefix))
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # we log reloads ourselves

    from lambdagate.local_runtime.functions import ConfigError
    from lambdagate.local_runtime.server import serve

    try:
        serve(
            args.directory, args.host, args.port, region=args.region, parent_pid=args.parent_pid, show_env=args.show_env
        )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
