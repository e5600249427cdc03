"""Bounds on what a routing table may cost to read: alias expansion, file size, the kind of file.

A table is data from a pull request or a mounted ConfigMap; reading it must take bounded time and memory
whatever it contains, in `router validate` and in a live reload alike.
"""

from __future__ import annotations

import io
import os
import resource
import time
from pathlib import Path

import pytest

from router.config import MAX_TABLE_BYTES, ConfigError, load_config, load_config_text, read_table, source
from router.config.source import MAX_ALIAS_EXPANSION, parse_yaml
from router.config.validate_cli import validate_files

BILLION_LAUGHS = """\
version: 1
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
upstreams: {}
routes: *i
"""


def test_billion_laughs_is_refused_quickly_with_little_memory() -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ConfigError) as refused:
        load_config_text(BILLION_LAUGHS, "bomb.yaml", env={})
    elapsed = time.perf_counter() - started
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert elapsed < 1.0, elapsed
    assert grown_kb < 200_000, f"peak memory grew by {grown_kb} kB"
    (problem,) = refused.value.problems
    assert problem.file == "bomb.yaml" and problem.line > 1
    assert f"{MAX_ALIAS_EXPANSION:,} nodes" in problem.message
    assert str(problem).startswith(f"bomb.yaml:{problem.line}:{problem.col}: aliases expand")


def test_ordinary_anchors_and_merges_still_work() -> None:
    doc = parse_yaml("base: &b {x: 1, y: [1, 2]}\none: {<<: *b, z: 3}\ntwo: *b\n", "t.yaml")
    assert doc.data["one"] == {"x": 1, "y": [1, 2], "z": 3} and doc.data["two"] == {"x": 1, "y": [1, 2]}


def test_the_expansion_bound_counts_nodes_not_alias_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Just below the bound is fine, just above is not: the bound is what aliases add, however used."""
    monkeypatch.setattr(source, "MAX_ALIAS_EXPANSION", 1000)
    size = 500  # the list node, then `size - 1` scalars, per alias use
    items = ", ".join(["1"] * (size - 1))
    below = f"a: &a [{items}]\nb: *a\nc: *a\n"  # 2 * size expanded nodes
    assert len(parse_yaml(below, "t.yaml").data["c"]) == size - 1
    with pytest.raises(ConfigError):
        parse_yaml(below + "d: *a\n", "t.yaml")


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "routes.yaml"
    os.mkfifo(fifo)
    started = time.perf_counter()
    with pytest.raises(OSError, match="not a regular file"):
        read_table(fifo)
    assert validate_files([str(fifo)], out=io.StringIO()) == 2
    assert time.perf_counter() - started < 1.0


def test_a_table_beyond_the_size_bound_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "routes.yaml"
    with big.open("wb") as file:
        file.truncate(MAX_TABLE_BYTES + 1)  # sparse: no need to write 8 MiB
    with pytest.raises(ConfigError) as refused:
        load_config(big)
    assert "may be at most 8,388,608 bytes" in str(refused.value.problems[0])
    assert len(read_table(big, max_bytes=MAX_TABLE_BYTES + 1)) == MAX_TABLE_BYTES + 1
