"""Convert one real_model_zoo model with Google's litert-torch (run in litert-torch's own venv).

Usage: python litert_torch_child.py NAME OUT.tflite   prints {"seconds": ...} as JSON on its last line.
Seeds as edgepipe's factory loader does, so both converters get the same weights.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import real_model_zoo  # noqa: E402


def main() -> None:
    name, out = sys.argv[1], sys.argv[2]
    start = time.perf_counter()
    import litert_torch

    torch.manual_seed(0)
    module, example = real_model_zoo.factory(name)()
    litert_torch.convert(module, (example,)).export(out)
    print(json.dumps({"seconds_in_process": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
