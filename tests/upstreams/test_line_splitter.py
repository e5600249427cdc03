"""The stream line cutter: the same lines whatever the reads, and a bound on how long one may grow."""

from __future__ import annotations

import random

from router.upstreams.http import LineSplitter


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    reads, at = [], 0
    for size in sizes:
        reads.append(data[at : at + size])
        at += size
    reads.append(data[at:])
    return [r for r in reads if r]


def test_lines_are_the_same_whatever_the_reads() -> None:
    rng = random.Random(7)
    for _ in range(200):
        lines = [bytes(rng.choice(b"ab ") for _ in range(rng.randrange(0, 300))) for _ in range(20)]
        data = b"\n".join(lines) + b"\n"
        splitter = LineSplitter(limit=300)
        got: list[bytes] = []
        for piece in cut(data, [rng.randrange(1, 700) for _ in range(30)]):
            got.extend(splitter.feed(piece))
        assert got == lines and splitter.pending == b"" and not splitter.too_long


def test_a_line_at_the_limit_passes_and_one_past_it_does_not() -> None:
    splitter = LineSplitter(limit=1024)
    assert splitter.feed(b"x" * 1000) == []
    assert splitter.feed(b"x" * 24 + b"\nnext") == [b"x" * 1024]
    assert splitter.pending == b"next" and not splitter.too_long
    assert splitter.feed(b"y" * 1020) == []  # 4 + 1020 = 1024: still allowed
    assert not splitter.too_long
    assert splitter.feed(b"y") == [] and splitter.too_long  # 1025
    assert splitter.pending == b""  # what arrived of the long line is dropped, not kept


def test_good_lines_before_a_long_one_are_still_returned() -> None:
    splitter = LineSplitter(limit=1024)
    assert splitter.feed(b"one\ntwo\n" + b"z" * 5000 + b"\nthree\n") == [b"one", b"two"]
    assert splitter.too_long
    splitter = LineSplitter(limit=1024)
    assert splitter.feed(b"one\n" + b"z" * 5000) == [b"one"] and splitter.too_long


def test_a_line_that_never_ends_is_refused_after_about_limit_bytes() -> None:
    splitter = LineSplitter(limit=64 * 1024)
    fed = 0
    while not splitter.too_long:
        assert splitter.feed(b"a" * 4096) == []
        fed += 4096
        assert fed < 1024 * 1024, "the splitter kept an endless line"
    assert 64 * 1024 < fed <= 64 * 1024 + 4096
