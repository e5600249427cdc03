from __future__ import annotations

import pytest

from router.policies.limits import clamp_max_tokens


@pytest.mark.parametrize(
    ("requested", "cap", "expected"),
    [
        (4096, 2048, 2048),  # larger client value clamped
        (100, 2048, 100),  # smaller one kept
        (2048, 2048, 2048),
        (None, 2048, 2048),  # missing one set to the cap
        (4096, None, 4096),  # no cap: whatever the client asked
        (None, None, None),
    ],
)
def test_clamp_max_tokens(requested: int | None, cap: int | None, expected: int | None) -> None:
    assert clamp_max_tokens(requested, cap) == expected
