"""Checkpoints that can be trusted: atomic writes, and loads that never run code.

Weights are safetensors files and everything else is JSON, so loading a
checkpoint only parses data. Every file is written to a temporary name in
the same folder, flushed to disk, then renamed over the target, so a crash or
Ctrl-C leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
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
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply to be a grukit file") from None


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write tensors as safetensors, atomically (tensors are made contiguous CPU copies)."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(flat, metadata=metadata))


MAX_HEADER = 100 * 2**20  # a safetensors header larger than this is not one grukit wrote


def _check_header(path: Path) -> None:
    """Validate a safetensors file's header and size before its tensors are read, so a bogus
    file never costs the memory it claims (or the size of the file)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a valid safetensors file (only {size} bytes)")
        n = int.from_bytes(head, "little")
        if n > min(MAX_HEADER, size - 8):
            raise ValueError(f"{path}: not a valid safetensors file (its header claims {n} bytes; the file has {size})")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"{path}: not a valid safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a valid safetensors file (its header is not an object)")
    ends = [v.get("data_offsets", [0, 0])[1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if any(not isinstance(e, int) for e in ends) or 8 + n + max(ends, default=0) != size:
        raise ValueError(
            f"{path}: truncated or corrupted ({size} bytes; its header describes {8 + n + max((e for e in ends if isinstance(e, int)), default=0)})"
        )


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file: (tensors, metadata). Raises a clear error on bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    _check_header(path)
    raw = path.read_bytes()
    try:
        tensors = st_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        metadata = json.loads(raw[8 : 8 + header_len]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid safetensors file ({e})") from None
    return tensors, metadata


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a write killed midway left in ``folder`` (``.NAME.XXXX.tmp``,
    ``.NAME.tmp.png``): the targets themselves are whole, since they are only ever renamed into place."""
    folder = Path(folder)
    stale = [
        p for p in folder.glob(".*.tmp*") if p.is_file() and (p.name.endswith(".tmp") or p.name.endswith(".tmp.png"))
    ]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def save_training_state(path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Everything needed to resume: weights, optimizer tensors, and a JSON part."""
    opt = optimizer.state_dict()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    per_param: dict[str, dict[str, Any]] = {}
    for pid, entries in opt["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value
            else:
                per_param.setdefault(str(pid), {})[name] = value
    meta = {
        "state": json.dumps(state),
        "param_groups": json.dumps(opt["param_groups"]),
        "scalars": json.dumps(per_param),
    }
    save_tensors(path, tensors, meta)


def load_training_state(path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    tensors, meta = load_tensors(path)
    if "state" not in meta or "param_groups" not in meta:
        raise ValueError(f"{path}: not a grukit training state (metadata missing)")
    try:
        model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as e:  # a tensor missing, unexpected or of another shape
        raise ValueError(f"{path} does not fit this run's model: {str(e).splitlines()[0]}") from None
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value
    for pid, scalars in json.loads(meta.get("scalars", "{}")).items():
        opt_state.setdefault(int(pid), {}).update(scalars)
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": json.loads(meta["param_groups"])})
    except (ValueError, KeyError, RuntimeError) as e:
        raise ValueError(f"{path}: its optimiser state does not fit this run's model ({e})") from None
    return json.loads(meta["state"])
