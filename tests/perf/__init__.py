"""The router's benchmark: the same requests sent directly to an upstream and through the router.

Run it with `bash tests/perf/run.sh` (or `python -m tests.perf`); results go to tests/perf/results.md.
"""
