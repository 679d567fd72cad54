"""What the generator benchmarks share: check the model folder first, run, print one JSON object."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from seedance.errors import SeedanceError


def run_on_weights(args, run: Callable[[object], dict]) -> int:
    """`run(args)` -> its result as one JSON line on stdout; a missing model or a SeedanceError is one line."""
    if not (Path(args.weights) / "model_index.json").is_file():  # before the imports that cost seconds
        print(f"error: no model at {args.weights} (model_index.json missing): train one or pass --weights",
              file=sys.stderr)
        return 1
    try:
        result = run(args)
    except SeedanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
