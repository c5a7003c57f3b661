"""The run folder of an evaluation: its description (``run.json``), fingerprints and batch files.

A run is identified by its settings and by fingerprints of the model and the data; a restarted run must agree
with the stored description, else :class:`RunMismatchError`. Batch ``i`` always covers images ``[i*b, (i+1)*b)``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from robseg_lib._io import atomic_json_dump
from robseg_lib.metrics import SegStats
from robseg_lib.params import DataParams

if TYPE_CHECKING:
    from robseg_lib.data import IndexedDataset

_FORMAT = 1
_RUN_FILE = "run.json"
_SUMMARY_FILE = "summary.json"
_VOLATILE_KEYS = frozenset({"created"})


class RunMismatchError(ValueError):
    """An output folder holds results of other settings than the ones requested."""


def _hash_tensors(items: Sequence[tuple[str, torch.Tensor]]) -> str:
    digest = hashlib.sha256()
    for name, tensor in items:
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        # numpy's stubs declare ndarray.__buffer__ for Python >= 3.12 only; the buffer protocol exists on 3.11 too.
        digest.update(t.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]
    return digest.hexdigest()


def _model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's parameters and buffers (names, dtypes, shapes, values)."""
    return _hash_tensors(sorted(model.state_dict().items()))


def _batch_fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    return _hash_tensors([("x", x), ("y", y)])


def _callable_id(fn: Callable[..., Any]) -> str:
    """A stable name for a callable: its ``attack_id`` if it has one, else module.qualname (with a partial's bound
    arguments)."""
    attack_id = getattr(fn, "attack_id", None)
    if isinstance(attack_id, str):
        return attack_id
    if isinstance(fn, functools.partial):
        bound = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in sorted(fn.keywords.items())]
        return f"partial({_callable_id(fn.func)}, {', '.join(bound)})"
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{getattr(fn, '__module__', None) or type(fn).__module__}.{name}"


def _data_identity(data_params: DataParams) -> dict[str, Any]:
    """The data section without its local root: moving the data folder does not change the run."""
    return {k: v for k, v in dataclasses.asdict(data_params).items() if k != "root"}


def _data_id(
    dataset: IndexedDataset, data_params: DataParams | None, x0: torch.Tensor, y0: torch.Tensor
) -> dict[str, Any]:
    """What identifies the evaluated data: type, size, profile section (without root), first batch's content."""
    return {
        "type": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
        "size": len(dataset),
        "params": None if data_params is None else _data_identity(data_params),
        "first_batch_sha256": _batch_fingerprint(x0, y0),
        "class_names": list(getattr(dataset, "class_names", [])) or None,
    }


def _json_roundtrip(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(old) | set(new)) - _VOLATILE_KEYS)
    return [
        f"{k}: {old.get(k, '<absent>')!r} in the folder, {new.get(k, '<absent>')!r} requested"
        for k in keys
        if old.get(k) != new.get(k)
    ]


def _prepare_run_dir(out_dir: Path, description: dict[str, Any]) -> None:
    """Write ``run.json``, or check that the existing one describes the same run."""
    path = out_dir / _RUN_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise RunMismatchError(f"{path} is not valid JSON ({err}); delete the folder or choose another") from err
        differences = _diff(old, description)
        if differences:
            raise RunMismatchError(
                f"{out_dir} holds a run with other settings; results of different settings are never mixed. "
                "Use another output folder or delete this one. Differences:\n  " + "\n  ".join(differences)
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.glob("batch_*.pt")):
        raise RunMismatchError(f"{out_dir} holds batch files but no {_RUN_FILE}: their settings are unknown")
    created = datetime.now(UTC).isoformat(timespec="seconds")
    atomic_json_dump({**description, "created": created}, path)


def _read_run(out_dir: Path) -> dict[str, Any]:
    path = out_dir / _RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{out_dir} is not an evaluation folder (no {_RUN_FILE})")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------------------
# Batches


def _batch_path(out_dir: Path, index: int) -> Path:
    return out_dir / f"batch_{index:05d}.pt"


def _batch_range(index: int, batch_size: int, n_images: int) -> tuple[int, int]:
    return index * batch_size, min((index + 1) * batch_size, n_images)


def _load_images(dataset: IndexedDataset, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack items ``start..stop-1`` of a data set whose items are ``(image, label, ...)``."""
    items = [dataset[i] for i in range(start, stop)]
    try:
        x = torch.stack([torch.as_tensor(item[0]) for item in items])
        y = torch.stack([torch.as_tensor(item[1]) for item in items])
    except RuntimeError as err:
        raise ValueError(
            f"images {start}..{stop - 1} cannot be stacked into one batch ({err}); the evaluation protocol needs "
            "equal-size images (e.g. centre crops)"
        ) from err
    if y.is_floating_point() or y.is_complex():
        raise ValueError(f"labels must be integer class maps, got dtype {y.dtype}")
    return x.float(), y.long()


def _read_batch(path: Path, start: int, stop: int, num_classes: int) -> dict[str, Any]:
    try:
        record = torch.load(path, weights_only=True)
        clean = SegStats.from_dict(record["clean"])
        attacks = {name: SegStats.from_dict(d) for name, d in record["attacks"].items()}
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise RuntimeError(f"cannot read {path} ({reason}); delete it and rerun to recompute that batch") from err
    expected = (stop - start, num_classes)
    shapes = {tuple(s.intersection.shape) for s in (clean, *attacks.values())}
    if (record.get("start"), record.get("stop")) != (start, stop) or shapes != {expected} or not attacks:
        raise RuntimeError(
            f"{path} does not hold images {start}..{stop - 1} with {num_classes} classes; delete it and rerun"
        )
    return {"clean": clean, "attacks": attacks}
