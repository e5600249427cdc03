"""`router serve | validate | routes | diff | usage`: the command line.

`serve` refuses to start on an invalid table and prints the very lines `validate` would, so a broken
deployment fails loudly at once instead of serving half a table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from router.config import ConfigError, RouterConfig, load_config
from router.config.diff import diff_configs
from router.config.validate_cli import DEFAULT_FILE, validate_files


def _load_or_exit(path: str) -> RouterConfig:
    try:
        return load_config(path)
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: invalid routing table; the router did not start", file=sys.stderr)
        raise SystemExit(1) from None


def _serve(args: argparse.Namespace) -> int:
    from router.security import bind_refusal
    from router.server import serve  # the server stack is only imported when serving

    config = _load_or_exit(args.config)
    refusal = bind_refusal(config, args.host or config.server.host)
    if not refusal:
        from router.state import multi_process_refusal

        refusal = multi_process_refusal(config, args.workers or config.server.workers)
    if refusal:
        print(refusal, file=sys.stderr)
        return 1
    serve(config, args.config, host=args.host, port=args.port, watch=not args.no_watch, workers=args.workers)
    return 0


def _routes(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.config)
    rows = [("PATH", "NAME", "MODEL", "UPSTREAMS", "TIMEOUT", "RETRIES", "MAX_TOKENS", "HEALTH")]
    for route in config.routes:
        policy = route.policy
        upstreams = ",".join(f"{u.name}" + (f"x{u.weight}" if u.weight != 1 else "") for u in route.upstreams)
        health = f"every {policy.health_check.interval:g}s" if policy.health_check.enabled else "off"
        rows.append(
            (
                route.path,
                route.name,
                route.model,
                upstreams,
                f"{policy.timeout:g}s",
                str(policy.max_retries),
                str(policy.max_tokens),
                health,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _diff(args: argparse.Namespace) -> int:
    from router.security.redact import Redactor, config_secrets

    old, new = _load_or_exit(args.old), _load_or_exit(args.new)
    redact = Redactor(config_secrets(old) | config_secrets(new))  # diffs land in CI logs: no secrets there
    lines = [redact(line) for line in diff_configs(old, new)]
    print("\n".join(lines) if lines else "no change")
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser (public so the docs and tests can inspect it)."""
    top = argparse.ArgumentParser(prog="router", description="An LLM gateway driven by one routing table.")
    commands = top.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the routing table")
    serve.add_argument("--config", default=DEFAULT_FILE, help="routing table (default: ./routes.yaml)")
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides server.port)")
    serve.add_argument("--workers", type=int, help="worker processes (overrides server.workers)")
    serve.add_argument(
        "--no-watch",
        action="store_true",
        help="do not reload when the file changes (SIGHUP and POST /admin/reload still do)",
    )
    serve.set_defaults(run=_serve)

    validate = commands.add_parser(
        "validate", help="check routing tables; exit 0 valid, 1 invalid, 2 unreadable"
    )
    validate.add_argument("files", nargs="*", help="files to check (default: ./routes.yaml)")
    validate.set_defaults(run=lambda args: validate_files(args.files))

    routes = commands.add_parser("routes", help="print the routing table")
    routes.add_argument("--config", default=DEFAULT_FILE)
    routes.set_defaults(run=_routes)

    diff = commands.add_parser("diff", help="print what a reload from OLD to NEW would change")
    diff.add_argument("old")
    diff.add_argument("new")
    diff.set_defaults(run=_diff)

    from router.usage_cli import add_parser as add_usage

    add_usage(commands, DEFAULT_FILE, _load_or_exit)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `router` console script."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, which is our "bad usage" code too
        return int(exc.code or 0)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
