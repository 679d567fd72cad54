"""Loading and saving weights safely.

Every user-facing load goes through `load_component`: it checks the folder
before diffusers does, so a missing or corrupt checkpoint becomes one line that
names the file, and it never unpickles anything (safetensors only).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TypeVar

from seedance.errors import WeightsError

T = TypeVar("T")

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_weights_dir(path: str | os.PathLike, config_name: str = "config.json") -> Path:
    """Validate a save_pretrained folder: config present and valid JSON, safetensors present and readable."""
    folder = Path(path)
    if not folder.is_dir():
        raise WeightsError(f"weights folder not found: {folder} (train it, or point to weights/seedance-tiny/...)")
    config = folder / config_name
    if not config.is_file():
        raise WeightsError(f"missing {config} : the weights folder is incomplete; re-copy or retrain it")
    try:
        json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"corrupt {config}: {exc.__class__.__name__}; re-copy or retrain it") from None
    tensors = sorted(folder.glob("*.safetensors"))
    if not tensors:
        pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise WeightsError(
                f"refusing pickle weights {folder / pickles[0]}: Seedance loads safetensors only; convert them first"
            )
        raise WeightsError(f"no .safetensors file in {folder}: the weights folder is incomplete; re-copy or retrain it")
    for file in tensors:
        check_safetensors(file)
    return folder


def check_safetensors(file: str | os.PathLike) -> None:
    """Open the safetensors header and every tensor's byte range; raise a one-line WeightsError if broken."""
    from safetensors import safe_open

    file = Path(file)
    try:
        size = file.stat().st_size
        with file.open("rb") as raw:
            header_len = int.from_bytes(raw.read(8), "little")
            if not 0 < header_len <= size - 8:
                raise ValueError("bad header length")
            header = json.loads(raw.read(header_len))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + header_len + end != size:
            raise ValueError(f"file is {size} bytes but its header describes {8 + header_len + end}")
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                handle.get_slice(key)
    except Exception as exc:  # safetensors raises several types; all mean the same to the user
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise WeightsError(f"corrupt weights file {file}: {reason}; re-copy or retrain it") from None


def load_component(cls: type[T], path: str | os.PathLike, **kwargs) -> T:
    """`cls.from_pretrained(path)` after checking the folder; errors are one line naming the file."""
    folder = check_weights_dir(path, getattr(cls, "config_name", None) or "config.json")
    try:
        return cls.from_pretrained(str(folder), use_safetensors=True, **kwargs)
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"cannot load {cls.__name__} from {folder}: {str(exc).splitlines()[0][:160]}") from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see either the old or the new content, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def readable_permissions(folder: Path) -> None:
    """mkdtemp/mkstemp make private (0700/0600) entries; shipped weights get ordinary permissions."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(folder, 0o777 & ~mask)
    for entry in folder.rglob("*"):
        os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~mask)


def atomic_save_pretrained(model, path: str | os.PathLike, **kwargs) -> None:
    """`model.save_pretrained` into a temporary sibling folder, then swap it in."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True, **kwargs)
        readable_permissions(tmp)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
