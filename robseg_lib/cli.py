"""Command line: ``python -m robseg_lib {sea,train,pretrain,zoo} ...`` for long runs and ``torchrun``.

The top of the stack: every subcommand parses its options here and calls the engines. The engines are imported
when a subcommand runs, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from robseg_lib.params import (
    BACKBONE_KINDS,
    CLASS_WEIGHT_OPTIONS,
    ParamError,
    ParamSet,
    check_device,
    load_params,
)
from robseg_lib.paths import CACHE_ENV

if TYPE_CHECKING:
    from torch import nn

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m robseg_lib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, options, _) in _COMMANDS.items():
        options(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return int(_COMMANDS[args.command][2](args) or 0)


# ---------------------------------------------------------------------------------------------------------
# sea


def _sea_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m robseg_lib sea``."""
    parser.add_argument("--params", required=True, help="profile name (tiny, smoke, voc, ade20k) or a YAML file")
    parser.add_argument("--eps", type=float, default=None, help="L-inf radius in /255, in (0, 64] (default: profile)")
    parser.add_argument("--model", default=None, help="model name of the profile's models.yaml")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="load this checkpoint into the model's architecture instead of taking the model from the zoo",
    )
    parser.add_argument("--data-root", default=None, help="local folder of the data set (overrides data.root)")
    parser.add_argument("--n-iter", type=int, default=None, help="iterations per attack (default: profile)")
    parser.add_argument("--n-images", type=int, default=None, help="evaluate the first N images (default: profile)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch (default: profile)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: profile)")
    parser.add_argument("--out", default=None, help="output folder (default: results/<profile>/sea/<model>/...)")
    parser.add_argument("--seed", type=int, default=None, help="seed of random starts and greedy search")
    parser.add_argument(
        "--class-weights",
        choices=CLASS_WEIGHT_OPTIONS,
        default=None,
        help="MCE-Bal class weights (default: profile)",
    )
    parser.add_argument("--strict-checks", action="store_true", help="fail instead of warning on sanity-check flags")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _sea_model(params: ParamSet, args: argparse.Namespace) -> tuple[str, nn.Module | None]:
    """The model to evaluate: a checkpoint loaded into the profile's architecture, or ``None`` (the zoo's)."""
    if args.model is not None:
        name = args.model
    else:
        try:
            name = params.default_model()
        except ParamError as err:
            raise ParamError(f"{err}; pass --model NAME") from err
    spec = params.model(name)
    if args.checkpoint is not None:
        from robseg_lib import models

        if not Path(args.checkpoint).is_file():
            raise ParamError(f"checkpoint {args.checkpoint} does not exist")
        model = models.create_model(spec.arch, num_classes=params.data.num_classes)
        models.load_checkpoint(model, args.checkpoint)
        return name, model
    return name, None


def _run_sea(args: argparse.Namespace) -> int:
    """Run ``python -m robseg_lib sea``; prints the results table (rank 0) and returns the exit status."""
    from robseg_lib import checks
    from robseg_lib.engines import evaluate

    try:
        params = load_params(args.params)
        if args.eps is not None and not 0 < args.eps <= 64:
            raise ParamError(f"--eps must lie in (0, 64] (a count of /255, e.g. 8 for 8/255), got {args.eps:g}")
        device = check_device(args.device or params.eval.device)
        for flag in ("n_iter", "n_images", "batch_size"):
            value = getattr(args, flag)
            if value is not None and value < 1:
                raise ParamError(f"--{flag.replace('_', '-')} must be positive, got {value}")
        if args.seed is not None and args.seed < 0:
            raise ParamError(f"--seed must be non-negative, got {args.seed}")
        name, model = _sea_model(params, args)
        evaluation = evaluate.Evaluation.of(
            params,
            name,
            eps=args.eps,
            data_root=args.data_root,
            n_iter=args.n_iter,
            n_images=args.n_images,
            batch_size=args.batch_size,
            seed=args.seed,
            device=device,
            class_weights=args.class_weights,
        )
        result = evaluate.run(
            evaluation, model=model, out_dir=args.out, progress=not args.no_progress, strict_checks=args.strict_checks
        )
    except checks.EvalCheckError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ParamError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        run = result.run
        print(
            f"SEA on {run['model']['name']}: eps {run['eps_255']:g}/255, {run['n_iter']} iterations, "
            f"{result.n_images} images, seed {run['seed']} -> {result.out_dir}"
        )
        print(result.table().to_string(float_format=lambda v: f"{v:.1f}"))
    return 0


# ---------------------------------------------------------------------------------------------------------
# train


def _train_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m robseg_lib train`` (also under ``torchrun``)."""
    parser.add_argument("--params", required=True, help="profile name (tiny, voc, ...) or parameter file/folder")
    parser.add_argument("--model", required=True, help="model name of the profile's models.yaml")
    parser.add_argument("--out", default=None, help="output folder (default: the model's zoo cache folder)")
    parser.add_argument("--backbone", default=None, help="backbone file (default: backbone_checkpoint or the zoo's)")
    parser.add_argument("--data-root", default=None, help="local folder of the data set (overrides data.root)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda:<local rank> if available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_train(args: argparse.Namespace) -> int:
    """Run ``train`` from parsed arguments; initialises DDP when launched by ``torchrun`` (WORLD_SIZE > 1)."""
    import torch
    import torch.distributed as dist

    from robseg_lib.engines import zoo
    from robseg_lib.engines.train import MODEL_FILE, train_model

    params = load_params(args.params)
    if args.data_root is not None:
        params = dataclasses.replace(params, data=dataclasses.replace(params.data, root=args.data_root))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = args.device or (f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if world > 1:
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        rank = dist.get_rank() if world > 1 else 0
        out = Path(args.out) if args.out else zoo.model_dir(params, args.model)
        if rank == 0 and args.out is None:
            zoo.write_manifest(params, args.model, out)
        backbone = args.backbone
        if backbone is None and params.model(args.model).init != "random":
            if params.model(args.model).backbone_checkpoint is None and rank == 0:
                backbone = zoo.get_backbone(params, args.model, progress=not args.no_progress)
            if world > 1:
                shared = [backbone]
                dist.broadcast_object_list(shared, src=0)
                backbone = shared[0]
        result = train_model(params, args.model, out, backbone=backbone, device=device, progress=not args.no_progress)
        if rank == 0:
            print(f"trained {args.model}: {result.out_dir / MODEL_FILE} ({result.wall_time_s:.0f} s); {result.final}")
    finally:
        if world > 1:
            dist.destroy_process_group()
    return 0


# ---------------------------------------------------------------------------------------------------------
# pretrain


def _pretrain_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m robseg_lib pretrain``."""
    parser.add_argument("--profile", default="tiny", help="profile with a pretrain section (default tiny)")
    parser.add_argument(
        "--kind", required=True, choices=BACKBONE_KINDS, help="clean or adversarially trained classifier"
    )
    parser.add_argument("--arch", required=True, help="segmentation architecture whose backbone is trained")
    parser.add_argument("--out", default=None, help="output file (default: the zoo's backbone cache)")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_pretrain(args: argparse.Namespace) -> int:
    """Run ``pretrain`` from parsed arguments and print the held-out accuracies."""
    from robseg_lib.data.digitscenes import scene_digit_sides
    from robseg_lib.engines import zoo
    from robseg_lib.engines.pretrain import pretrain_backbone

    params = load_params(args.profile)
    progress = not args.no_progress
    path: Path | None  # pretrain_backbone's result has no path only when it is given none to save to
    if args.out is None:
        path = zoo.get_backbone_file(params, args.arch, args.kind, device=args.device, progress=progress)
        metrics = zoo.backbone_info(path)["metrics"]
    else:
        if params.pretrain is None:
            raise SystemExit(f"profile {params.profile!r} has no pretrain section ({params.source})")
        result = pretrain_backbone(
            params.pretrain,
            args.arch,
            args.kind,
            args.out,
            digit_side=scene_digit_sides(params.data.image_size),
            device=args.device,
            progress=progress,
        )
        path, metrics = result.path, result.metrics
    print(f"{args.kind} {args.arch}: {path}")
    print(", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return 0


# ---------------------------------------------------------------------------------------------------------
# zoo


def _zoo_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m robseg_lib zoo``."""
    parser.add_argument("--profile", default="tiny", help="profile name or parameter folder (default tiny)")
    parser.add_argument("--train", default=None, metavar="NAME", help="train a model if missing ('all': every model)")
    parser.add_argument("--list", action="store_true", help="print the zoo table")
    parser.add_argument("--device", default="cpu", help="torch device for training")
    parser.add_argument(
        "--jobs", type=int, default=None, help="models trained at once (default: CPU cores on a CPU, else 1)"
    )
    parser.add_argument("--root", default=None, help=f"cache root (default ${CACHE_ENV} or <workspace>/cache)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run_zoo(args: argparse.Namespace) -> int:
    """Run ``zoo`` from parsed arguments."""
    import pandas as pd

    from robseg_lib.engines.zoo import list_zoo, train_zoo

    params = load_params(args.profile)
    if args.train is not None:
        names = list(params.models) if args.train == "all" else [args.train]
        start = time.perf_counter()
        times = train_zoo(
            params, names, jobs=args.jobs, device=args.device, root=args.root, progress=not args.no_progress
        )
        for label, seconds in times.items():
            print(f"{label}: trained in {seconds:.0f} s")
        print(f"{len(names)} model(s) ready; {len(times)} job(s) trained in {time.perf_counter() - start:.0f} s")
    if args.list or args.train is None:
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(list_zoo(params, root=args.root).drop(columns=["description", "path"]).to_string(index=False))
    return 0


_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "sea": ("evaluate a model with SEA (resumable, shardable under torchrun)", _sea_options, _run_sea),
    "train": ("train a segmentation model: clean, AT or PIR-AT", _train_options, _run_train),
    "pretrain": (
        "pre-train a tiny backbone on digit classification (clean or robust)",
        _pretrain_options,
        _run_pretrain,
    ),
    "zoo": ("list or train the models of a profile's zoo", _zoo_options, _run_zoo),
}
