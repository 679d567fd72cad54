"""Shared test settings: offline, single-threaded, deterministic."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "PYTEST_XDIST_WORKER" in os.environ:
    # librosa's numba gufuncs cache their compiled code beside librosa's sources. Two xdist workers compiling the
    # same gufunc into an empty cache (a fresh .venv) at once segfaulted in CI; each worker gets its own cache.
    import tempfile

    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")  # no getuid on Windows
    worker = f"seedance-numba-{user}-{os.environ['PYTEST_XDIST_WORKER']}"
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), worker))

import torch  # noqa: E402

torch.set_num_threads(1)
