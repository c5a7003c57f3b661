"""Cost of adversarial training: one k-step AT iteration vs (k+1) clean iterations, measured in one run.

The paper counts k-step AT as (k+1)x clean training (algorithms §8.2); the training log's ``cost_passes``
column uses that count. This script checks that our AT iteration costs no more than that (target ratio <= 1.05):
each attack step is a forward and an input-gradient backward, cheaper than a training step (no weight gradients,
no optimiser update). Timings are medians over interleaved repeats, so a noisy machine affects both sides alike.

Usage: ``python benchmarks/bench_at_overhead.py [--arch tiny_upernet_convnext] [--steps 2 5] [--batch 16]``.
Defaults: the tiny profile's evaluated model at its image size and training batch size, k = 2 and 5 (the zoo's
AT models), one thread and the process's CPU time with glibc's malloc thresholds pinned, as in
``bench_apgd_overhead.py``. The ratios go to ``--out`` (default ``results/benchmarks/bench_at_overhead.json``).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
from _bench_common import Timing, add_output_option, add_timing_options, profile_params, timing_setup, write_record

from robseg_lib import models
from robseg_lib.engines.train import param_groups, pgd_training_attack, segmentation_loss

NAME = "bench_at_overhead"
TARGET_RATIO = 1.05


def _train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    main, aux = model.forward_with_aux(x)
    loss = segmentation_loss(main, aux, y, 0.4)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure_steps(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    k: int,
    repeats: int,
    timing: Timing,
) -> tuple[float, float]:
    """Median times (s) of one k-step AT iteration and of k+1 clean iterations, measured interleaved."""

    def at_iteration() -> None:
        _train_step(model, opt, pgd_training_attack(model, x, y, 4 / 255, 0.01, k), y)

    def clean_iterations() -> None:
        for _ in range(k + 1):
            _train_step(model, opt, x, y)

    at_times, clean_times = [], []
    for _ in range(repeats):
        at_times.append(timing.measure(at_iteration)[0])
        clean_times.append(timing.measure(clean_iterations)[0])
    return statistics.median(at_times), statistics.median(clean_times)


def main(argv: Sequence[str] | None = None) -> Path:
    """Measure every ``--steps`` value, print the ratios and write the JSON record; returns its path."""
    ps = profile_params()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=ps.model(ps.default_model()).arch)
    parser.add_argument("--num-classes", type=int, default=ps.data.num_classes)
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--batch", type=int, default=ps.train.batch_size)
    parser.add_argument("--size", type=int, default=ps.data.image_size)
    parser.add_argument("--repeats", type=int, default=7)
    add_timing_options(parser)
    add_output_option(parser, NAME)
    args = parser.parse_args(argv)
    timing = timing_setup(parser, args)
    torch.manual_seed(0)
    model = models.create_model(args.arch, num_classes=args.num_classes).to(timing.device).train()
    opt = torch.optim.AdamW(param_groups(model, 1e-2), lr=1e-4)
    x = torch.rand(args.batch, 3, args.size, args.size).to(timing.device)
    y = torch.randint(0, args.num_classes, (args.batch, args.size, args.size)).to(timing.device)
    for _ in range(2):
        _train_step(model, opt, x, y)
    print(
        f"{args.arch}, batch {args.batch} x {args.size}x{args.size}, {torch.get_num_threads()} threads, "
        f"clock: {timing.clock_name}, malloc pinned: {timing.malloc_pinned}"
    )
    results = []
    for k in args.steps:
        at, clean = measure_steps(model, opt, x, y, k, args.repeats, timing)
        results.append(
            {
                "setting": f"{args.arch}, batch {args.batch}, {args.size}x{args.size}, k={k}",
                "ratio": at / clean,
                "target": TARGET_RATIO,
                "model": args.arch,
                "batch": args.batch,
                "size": args.size,
                "steps": k,
                "repeats": args.repeats,
                "at_iteration_ms": 1e3 * at,
                "clean_iterations_ms": 1e3 * clean,
            }
        )
        print(
            f"k={k}: AT iteration {at * 1e3:.1f} ms, {k + 1} clean iterations {clean * 1e3:.1f} ms, "
            f"ratio {at / clean:.3f} (target <= {TARGET_RATIO})"
        )
    options = {**vars(args), "clock": timing.clock_name, "malloc_pinned": timing.malloc_pinned}
    return write_record(NAME, results, options, args.out, timing.device)


if __name__ == "__main__":
    main()
