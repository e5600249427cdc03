"""Serve one fake upstream until Ctrl-C, e.g. as the benchmark's model server.

python -m tests.fakes --kind openai --port 9001 --chunks 200
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from collections.abc import Callable

from ._base import FakeUpstream
from ._ollama import FakeOllama
from ._openai import FakeOpenAI


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("openai", "ollama"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--chunks", type=int, default=5, help="tokens (stream chunks) per answer")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    parser.add_argument(
        "--models", default="", help="comma-separated models to list; when empty, any model name is served"
    )
    args = parser.parse_args(argv)

    models = [m for m in args.models.split(",") if m]
    cls: type[FakeUpstream] = FakeOpenAI if args.kind == "openai" else FakeOllama
    fake = cls(
        models or None,
        host=args.host,
        port=args.port,
        reply_tokens=args.chunks,
        chunk_delay=args.chunk_delay,
        accept_any_model=not models,
        record_requests=False,  # a benchmark would otherwise grow this list forever
        loop_factory=_loop_factory(),
    )
    stop = threading.Event()
    # Installed explicitly: a shell starting us in the background (`&`) sets SIGINT to "ignore".
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with fake:
        print(f"fake {args.kind} listening on {fake.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
