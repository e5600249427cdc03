"""`router usage`: today's and recent days' use per client key and route, and the quotas, as a table.

It reads `GET /usage` of a running router (an admin key is needed: use is per tenant), so it shows what
the router counts, shared by every process when the state is in Redis. The address comes from `--url`, or
from the table file's `server.host` and `server.port`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router.config import RouterConfig

ADMIN_KEY_ENV = "ROUTER_ADMIN_KEY"


def _address(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    server = args.load(args.config).server
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{host}:{server.port}"


def fetch(url: str, admin_key: str | None, days: int, timeout: float = 10.0) -> dict[str, Any]:
    """The `/usage` document; SystemExit with a readable message when it cannot be had."""
    request = urllib.request.Request(f"{url}/usage?days={days}")
    if admin_key:
        request.add_header("Authorization", f"Bearer {admin_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            document: dict[str, Any] = json.loads(response.read())
            return document
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read())["error"]["message"]
        except Exception:
            message = error.reason
        print(f"{url}/usage answered {error.code}: {message}", file=sys.stderr)
        raise SystemExit(1) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        print(f"cannot reach the router at {url}: {reason}; is it running? (--url)", file=sys.stderr)
        raise SystemExit(2) from None


def render(document: dict[str, Any]) -> str:
    """The usage table, then the quotas table (when some key has a quota)."""
    rows: list[tuple[str, ...]] = [
        ("DATE", "KEY", "ROUTE", "REQUESTS", "PROMPT", "COMPLETION", "TOTAL", "ESTIMATED")
    ]
    for day in document["days"]:
        for key, use in day["keys"].items():
            for route, r in use["routes"].items():
                rows.append(
                    (
                        day["date"],
                        key,
                        route,
                        str(r["requests"]),
                        str(r["prompt_tokens"]),
                        str(r["completion_tokens"]),
                        str(r["total_tokens"]),
                        str(r["estimated_tokens"]),
                    )
                )
    lines = _columns(rows) if len(rows) > 1 else ["no use recorded in these days"]
    quotas = document.get("quotas") or {}
    if quotas:
        quota_rows: list[tuple[str, ...]] = [("KEY", "QUOTA", "USED", "LIMIT", "LEFT", "RESETS (UTC)")]
        for key, entry in quotas.items():
            resets = time.strftime("%Y-%m-%d %H:%M", time.gmtime(entry["resets_at"]))
            for name in ("requests_per_day", "tokens_per_day"):
                if name in entry:
                    used, limit = entry[name]["used"], entry[name]["limit"]
                    left = max(0, limit - used)
                    quota_rows.append((key, name, str(used), str(limit), str(left), resets))
        lines += ["", *_columns(quota_rows)]
    return "\n".join(lines)


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def run(args: argparse.Namespace) -> int:
    """`router usage`."""
    document = fetch(_address(args), args.admin_key or os.environ.get(ADMIN_KEY_ENV), args.days)
    print(json.dumps(document, indent=2) if args.json else render(document))
    return 0


def add_parser(commands: Any, default_config: str, load: Callable[[str], RouterConfig]) -> None:
    """Register `router usage` on the CLI's subcommands (`load` reads a table or exits saying why)."""
    usage = commands.add_parser("usage", help="print token and request use per key and route, and quotas")
    usage.add_argument("--url", help="the router's address (default: from the table's server.host/port)")
    usage.add_argument("--config", default=default_config, help="table whose server address to use")
    usage.add_argument("--admin-key", help=f"an admin key (default: ${ADMIN_KEY_ENV})")
    usage.add_argument("--days", type=int, default=1, choices=range(1, 8), metavar="1-7", help="days (1)")
    usage.add_argument("--json", action="store_true", help="print the /usage document as JSON")
    usage.set_defaults(run=run, load=load)
