"""The on-demand model zoo: every model of a profile's ``models.yaml``, trained once and cached.

``get_model(params, name)`` returns the named model in eval mode. At paper scale a model with ``checkpoint:`` is
loaded from that file. Otherwise the zoo looks in ``<cache>/<profile>/<name>-<key>/``; if the folder holds no
weights yet it pre-trains the backbone the model needs (also cached, under ``backbones/``), trains the model
with :func:`robseg_lib.engines.train.train_model` (resuming an interrupted run) and stores

* ``model.safetensors`` (with the JSON sidecar of :func:`robseg_lib.models.save_checkpoint`),
* ``params.json``: everything the key was computed from,
* ``train_log.csv``: the training log.

The key is a hash of everything that determines the result: the data parameters (except the local root
folder), the model's effective training parameters, its model entry (except the description), the registry's
configuration of its architecture, the key of its backbone (pre-training parameters and architecture
configuration, or the content of a backbone file) and the library version. Changing any of
them gives a new folder; old folders stay until deleted. The cache root is ``root=``, else the environment
variable ``ROBSEG_CACHE``, else ``cache/`` in the checkout. A file lock serialises concurrent requests for the
same entry (two notebooks asking for one model train it once). :func:`train_zoo` trains whatever is missing
with several single-threaded processes at once: the tiny models use a CPU core far better one per process than
two threads per model.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from robseg_lib import __version__, models
from robseg_lib._io import atomic_json_dump
from robseg_lib._progress import progress_bar
from robseg_lib.data.digitscenes import scene_digit_sides
from robseg_lib.engines.pretrain import pretrain_backbone
from robseg_lib.engines.train import train_model
from robseg_lib.params import ParamError, ParamSet, PretrainParams
from robseg_lib.paths import cache_root

__all__ = [
    "backbone_info",
    "get_backbone",
    "get_backbone_file",
    "get_model",
    "list_zoo",
    "model_dir",
    "model_key",
    "train_zoo",
    "training_log",
    "write_manifest",
    "zoo_dir",
]

_MODEL_FILE = "model.safetensors"
_BACKBONE_FILE = "classifier.safetensors"
_MANIFEST = "params.json"
_LOG_FILE = "train_log.csv"
_KEY_CHARS = 10


def zoo_dir(params: ParamSet, root: str | Path | None = None) -> Path:
    """The cache folder of a profile: ``<cache root>/<profile>``."""
    return cache_root(root) / params.profile


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:_KEY_CHARS]


def _version() -> str:
    return __version__


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:_KEY_CHARS]


def _resolve_file(params: ParamSet, value: str, what: str) -> Path:
    """A file named in a parameter file: absolute, relative to the working folder, or to the parameter folder."""
    base = Path(params.source)
    base = base if base.is_dir() else base.parent
    candidates = [Path(value).expanduser()]
    if not candidates[0].is_absolute():
        candidates.append(base / value)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{what} {value!r} not found; looked at: {', '.join(str(p.resolve()) for p in candidates)}")


def _pretrain_section(params: ParamSet, arch: str, kind: str) -> PretrainParams:
    """The profile's pretrain section, which every backbone pre-trained by the zoo needs."""
    if params.pretrain is None:
        raise ParamError(
            f"profile {params.profile!r} has no pretrain section ({params.source}); a {kind} backbone for {arch!r} "
            "must then come from backbone_checkpoint"
        )
    return params.pretrain


def _backbone_payload(params: ParamSet, arch: str, kind: str) -> dict[str, Any]:
    pretrain = _pretrain_section(params, arch, kind)
    return {
        "arch": arch,
        "arch_config": _arch_config(arch),
        "kind": kind,
        "pretrain": {k: v for k, v in dataclasses.asdict(pretrain.for_arch(arch)).items() if k != "per_arch"},
        "digit_side": list(scene_digit_sides(params.data.image_size)),
        "version": _version(),
    }


def _arch_config(arch: str) -> dict[str, Any]:
    """The registry's resolved configuration of ``arch``: changing a registered default gives a new key."""
    return models.model_config(arch)


def _backbone_dir(params: ParamSet, arch: str, kind: str, root: str | Path | None) -> Path:
    key = _digest(_backbone_payload(params, arch, kind))
    return zoo_dir(params, root) / "backbones" / f"{arch}-{kind}-{key}"


def _backbone_identity(params: ParamSet, name: str) -> dict[str, Any] | None:
    mp = params.model(name)
    if mp.init == "random":
        return None
    if mp.backbone_checkpoint is not None:
        path = _resolve_file(params, mp.backbone_checkpoint, f"backbone_checkpoint of {name!r}")
        return {"file": path.name, "sha256": _file_digest(path)}
    return _backbone_payload(params, mp.arch, mp.init)


def _manifest(params: ParamSet, name: str) -> dict[str, Any]:
    mp = params.model(name)
    data = {k: v for k, v in dataclasses.asdict(params.data).items() if k != "root"}
    model = {k: v for k, v in dataclasses.asdict(mp).items() if k != "description"}
    return {
        "data": data,
        "train": dataclasses.asdict(params.train_for(name)),
        "model": model,
        "arch_config": _arch_config(mp.arch),
        "backbone": _backbone_identity(params, name),
        "version": _version(),
    }


def model_key(params: ParamSet, name: str) -> str:
    """The cache key of model ``name``: a hash of everything that determines the trained weights."""
    return _digest(_manifest(params, name))


def model_dir(params: ParamSet, name: str, root: str | Path | None = None) -> Path:
    """The cache folder of model ``name``: ``<cache>/<profile>/<name>-<key>``."""
    return zoo_dir(params, root) / f"{name}-{model_key(params, name)}"


def write_manifest(params: ParamSet, name: str, folder: str | Path) -> Path:
    """Write ``params.json`` (the hashed parameters, the name and the profile) into ``folder``."""
    payload = {"name": name, "profile": params.profile, "key": model_key(params, name), **_manifest(params, name)}
    return atomic_json_dump(payload, Path(folder) / _MANIFEST)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<folder>.lock`` (waits while another process holds it)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f".{folder.name}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _complete(weights: Path) -> bool:
    """Whether ``weights`` was fully written (``save_checkpoint`` writes its JSON sidecar last)."""
    return weights.with_name(weights.name + ".json").exists()


def backbone_info(path: str | Path) -> dict[str, Any]:
    """The pre-training record (parameters and held-out accuracies) stored with a cached backbone."""
    return models.read_checkpoint_meta(path)


def get_backbone_file(
    params: ParamSet,
    arch: str,
    kind: str,
    *,
    device: str = "cpu",
    progress: bool = True,
    train_if_missing: bool = True,
    root: str | Path | None = None,
) -> Path:
    """The cached digit classifier of ``kind`` (clean / robust) for ``arch``, pre-trained if missing."""
    folder = _backbone_dir(params, arch, kind, root)
    path = folder / _BACKBONE_FILE
    if _complete(path):
        return path
    if not train_if_missing:
        raise FileNotFoundError(f"no cached {kind} backbone for {arch!r} at {folder} (train_if_missing=False)")
    with _locked(folder):
        if not _complete(path):
            pretrain_backbone(
                _pretrain_section(params, arch, kind),
                arch,
                kind,
                path,
                digit_side=scene_digit_sides(params.data.image_size),
                device=device,
                progress=progress,
            )
    return path


def get_backbone(
    params: ParamSet,
    name: str,
    *,
    device: str = "cpu",
    progress: bool = True,
    train_if_missing: bool = True,
    root: str | Path | None = None,
) -> Path | None:
    """The backbone file model ``name`` starts from (``None`` for a random init)."""
    mp = params.model(name)
    if mp.init == "random":
        return None
    if mp.backbone_checkpoint is not None:
        return _resolve_file(params, mp.backbone_checkpoint, f"backbone_checkpoint of {name!r}")
    return get_backbone_file(
        params, mp.arch, mp.init, device=device, progress=progress, train_if_missing=train_if_missing, root=root
    )


def get_model(
    params: ParamSet,
    name: str,
    device: str = "cpu",
    progress: bool = True,
    train_if_missing: bool = True,
    root: str | Path | None = None,
) -> nn.Module:
    """Model ``name`` of the profile in eval mode: from its checkpoint, from the cache, or trained now.

    Args:
        params: the profile (:func:`robseg_lib.params.load_params`).
        name: a model of ``params.models``.
        device: where the returned model lives (training also runs there).
        progress: progress bars while pre-training / training.
        train_if_missing: train a model that is not cached; ``False`` raises instead.
        root: cache root (default ``$ROBSEG_CACHE`` or ``cache/``).

    Raises:
        FileNotFoundError: a ``checkpoint:`` file that does not exist (the message says where it looked), or a
            model that is not cached while ``train_if_missing`` is false.
    """
    mp = params.model(name)
    if mp.checkpoint is not None:
        path = _resolve_file(params, mp.checkpoint, f"checkpoint of model {name!r}")
        model = models.create_model(mp.arch, num_classes=params.data.num_classes)
        models.load_checkpoint(model, path)
        return model.to(device).eval()
    folder = model_dir(params, name, root)
    if not _complete(folder / _MODEL_FILE):
        if not train_if_missing:
            raise FileNotFoundError(
                f"model {name!r} of profile {params.profile!r} is not cached at {folder}; train it with "
                f"`python -m robseg_lib zoo --profile {params.profile} --train {name}`"
            )
        with _locked(folder):
            if not _complete(folder / _MODEL_FILE):
                backbone = get_backbone(params, name, device=device, progress=progress, root=root)
                write_manifest(params, name, folder)
                return train_model(
                    params, name, folder, backbone=backbone, device=device, progress=progress
                ).model.eval()
    model = models.create_model(mp.arch, num_classes=params.data.num_classes)
    models.load_checkpoint(model, folder / _MODEL_FILE)
    return model.to(device).eval()


@dataclass(frozen=True)
class _Job:
    """One unit of :func:`train_zoo`: a backbone (``model`` is ``None``) or a model."""

    label: str
    cost: float
    arch: str
    kind: str = ""
    model: str | None = None
    needs: str | None = None


def _backbone_label(arch: str, kind: str) -> str:
    return f"backbone {arch}/{kind}"


def _pending_jobs(params: ParamSet, names: Sequence[str], root: Path) -> list[_Job]:
    """The backbones and models among ``names`` that are not cached, each with a relative cost estimate.

    Cost counts forward-backward passes over training samples: epochs x (attack steps + 1) x training set.
    """
    jobs: dict[str, _Job] = {}
    for name in names:
        mp = params.model(name)
        if mp.checkpoint is not None or _complete(model_dir(params, name, root) / _MODEL_FILE):
            continue
        needs = None
        if mp.init != "random" and mp.backbone_checkpoint is None:
            folder = _backbone_dir(params, mp.arch, mp.init, root)
            if not _complete(folder / _BACKBONE_FILE):
                needs = _backbone_label(mp.arch, mp.init)
                pp = _pretrain_section(params, mp.arch, mp.init).for_arch(mp.arch)
                adversarial = pp.epochs - pp.clean_epochs if mp.init == "robust" else 0
                cost = (pp.epochs + adversarial * pp.attack_steps) * pp.train_size
                jobs[needs] = _Job(needs, cost, mp.arch, kind=mp.init)
        tp = params.train_for(name)
        if params.data.train_size is None:
            raise ParamError(
                f"{params.source}: the zoo trains DigitScenes models (data.train_size), not {params.data.name} ones; "
                f"give model {name!r} a checkpoint"
            )
        cost = tp.epochs * (tp.attack_steps + 1) * params.data.train_size
        jobs[name] = _Job(f"model {name}", cost, mp.arch, model=name, needs=needs)
    return list(jobs.values())


def _run_job(params: ParamSet, job: _Job, device: str, root: Path, threads: int | None) -> float:
    """Train one job (in a worker process when ``threads`` is set); returns its wall time in seconds."""
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    if job.model is None:
        get_backbone_file(params, job.arch, job.kind, device=device, progress=False, root=root)
    else:
        get_model(params, job.model, device=device, progress=False, root=root)
    return time.perf_counter() - start


def _failure(job: _Job, err: Exception) -> RuntimeError:
    return RuntimeError(f"zoo training of {job.label} failed: {type(err).__name__}: {err}")


def train_zoo(
    params: ParamSet,
    names: Sequence[str] | None = None,
    *,
    jobs: int | None = None,
    device: str = "cpu",
    root: str | Path | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Train the missing backbones and models of the zoo, ``jobs`` processes at a time.

    Each process trains one backbone or model with ``cpu_count // jobs`` threads. On a CPU the default is one
    single-threaded process per core: a tiny model's step takes 29 ms on one thread and 33 ms on two
    (2 cores), so two processes train twice as many models in the same time. Longer jobs start first; a model
    starts once its backbone is cached. Each finished job is cached as by :func:`get_model`, and an interrupted
    model resumes from its last checkpoint, so a crash loses at most the epochs in flight. After a failed job no
    new job starts; those running finish (and are cached) before the error is raised.

    Args:
        params: the profile.
        names: models to train (default: every model of the profile).
        jobs: processes at once (default: the number of CPU cores on a CPU, 1 on an accelerator).
        device: torch device for training.
        root: cache root (default ``$ROBSEG_CACHE`` or ``cache/``).
        progress: a progress bar over the jobs.

    Returns:
        Wall seconds of every job trained now, by label (``"backbone <arch>/<kind>"``, ``"model <name>"``).
    """
    root = cache_root(root)
    pending = sorted(
        _pending_jobs(params, list(params.models) if names is None else names, root), key=lambda j: -j.cost
    )
    cpus = os.cpu_count() or 1
    jobs = (cpus if device == "cpu" else 1) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    times: dict[str, float] = {}
    if not pending:
        return times
    with progress_bar(total=len(pending), enabled=progress, desc=f"zoo {params.profile}", unit="job") as bar:
        if jobs == 1:
            for job in sorted(pending, key=lambda j: j.model is not None):
                try:
                    times[job.label] = _run_job(params, job, device, root, None)
                except Exception as err:
                    raise _failure(job, err) from err
                bar.update()
            return times
        threads = max(1, cpus // jobs)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(jobs, len(pending)), mp_context=context) as pool:
            running: dict[Future[float], _Job] = {}
            while pending or running:
                ready = [job for job in pending if job.needs is None or job.needs in times]
                for job in ready[: jobs - len(running)]:
                    pending.remove(job)
                    running[pool.submit(_run_job, params, job, device, root, threads)] = job
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = running.pop(future)
                    try:
                        times[job.label] = future.result()
                    except Exception as err:
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise _failure(job, err) from err
                    bar.update()
                    bar.set_postfix_str(f"{job.label}: {times[job.label]:.0f} s", refresh=False)
    return times


def training_log(params: ParamSet, name: str, root: str | Path | None = None) -> pd.DataFrame:
    """The training log of cached model ``name`` (one row per logged epoch)."""
    path = model_dir(params, name, root) / _LOG_FILE
    if not path.exists():
        raise FileNotFoundError(f"no training log for model {name!r} at {path} (train it first: zoo.get_model)")
    return pd.read_csv(path)


def _last_row(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows[-1] if rows else {}


def list_zoo(params: ParamSet, root: str | Path | None = None) -> pd.DataFrame:
    """One row per model of the profile: its recipe, whether it is cached, and its final log values."""
    rows = []
    for name, mp in params.models.items():
        tp = params.train_for(name) if params.train is not None else None
        row: dict[str, Any] = {
            "name": name,
            "arch": mp.arch,
            "regime": mp.regime,
            "init": mp.init,
            "attack_steps": None if tp is None else tp.attack_steps,
            "epochs": None if tp is None else tp.epochs,
            "description": mp.description,
        }
        if mp.checkpoint is not None:
            row.update(cached=Path(mp.checkpoint).exists(), path=mp.checkpoint)
        else:
            folder = model_dir(params, name, root)
            row.update(cached=_complete(folder / _MODEL_FILE), path=str(folder))
            last = _last_row(folder / _LOG_FILE)
            for col in ("val_miou", "val_robust_miou", "wall_time_s", "cost_passes"):
                row[col] = float(last[col]) if last.get(col) not in (None, "") else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)
