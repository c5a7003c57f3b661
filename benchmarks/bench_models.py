"""Parameter counts, and forward+backward and eval-forward timings of the registered models on CPU.

Usage: ``python benchmarks/bench_models.py [--models tiny_upernet_convnext ...] [--batch 16] [--size 48]``.
Defaults: the tiny profile's training batch size and image size, two threads (a 2-core laptop), wall-clock time.
One training step = ``forward_with_aux`` + CE (+ 0.4 aux CE) + backward, as in training. The median and the
minimum over ``--repeats`` steps are printed and written to ``--out`` (default
``results/benchmarks/bench_models.json``, shown on the book's performance page); on a shared machine the minimum
is the better estimate. There is no target: the results hold no ``ratio``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from _bench_common import add_output_option, profile_params, write_record

from robseg_lib import models

NAME = "bench_models"


def _time(fn: Callable[[], None], repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench(name: str, batch: int, size: int, num_classes: int, repeats: int) -> dict[str, float]:
    """Parameter count and timings (ms) of one model."""
    torch.manual_seed(0)
    model = models.create_model(name, num_classes=num_classes)
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, num_classes, (batch, size, size))

    def train_step() -> None:
        model.train()
        main, aux = model.forward_with_aux(x)
        loss = F.cross_entropy(main, y)
        if aux is not None:
            loss = loss + 0.4 * F.cross_entropy(aux, y)
        model.zero_grad(set_to_none=True)
        loss.backward()

    def eval_forward() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    train = _time(train_step, repeats)
    evaluation = _time(eval_forward, repeats)
    return {
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "train_median_ms": 1e3 * statistics.median(train),
        "train_min_ms": 1e3 * min(train),
        "eval_median_ms": 1e3 * statistics.median(evaluation),
        "eval_min_ms": 1e3 * min(evaluation),
    }


def main(argv: Sequence[str] | None = None) -> Path:
    """Print one row per model and write the JSON record; returns its path."""
    ps = profile_params()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny_upernet_convnext", "tiny_segmenter_vit"])
    parser.add_argument("--batch", type=int, default=ps.train.batch_size)
    parser.add_argument("--size", type=int, default=ps.data.image_size)
    parser.add_argument("--num-classes", type=int, default=ps.data.num_classes)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    add_output_option(parser, NAME)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, {args.size}x{args.size}, {args.threads} threads, torch {torch.__version__}")
    print(f"{'model':28s} {'params':>8s} {'train med':>10s} {'train min':>10s} {'eval med':>9s} {'eval min':>9s}")
    results = []
    for name in args.models:
        r = bench(name, args.batch, args.size, args.num_classes, args.repeats)
        results.append({"setting": f"{name}, batch {args.batch}, {args.size}x{args.size}", "model": name, **r})
        print(
            f"{name:28s} {r['params_m']:7.3f}M {r['train_median_ms']:8.1f}ms {r['train_min_ms']:8.1f}ms "
            f"{r['eval_median_ms']:7.1f}ms {r['eval_min_ms']:7.1f}ms"
        )
    return write_record(NAME, results, {**vars(args), "clock": "wall"}, args.out)


if __name__ == "__main__":
    main()
