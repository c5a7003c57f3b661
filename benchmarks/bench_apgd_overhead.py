"""Overhead of one APGD iteration over a bare forward + backward pass of the same model on the same batch.

One APGD iteration = one forward and one backward pass plus the step, the projections, the attack and
tracking losses, the accuracy and the per-image bookkeeping. Its cost is measured as
(T(APGD, n iterations) − T(APGD, 0 iterations)) / n, which cancels the start-up work (random start,
objective set-up, the gradient-free evaluation of the final iterate), and compared with n bare
forward + backward passes (cross-entropy, gradient w.r.t. the input, parameters frozen as in the attack).
The measurements are interleaved and repeated; the median ratio is reported. Target: <= 1.10.

    python benchmarks/bench_apgd_overhead.py                           # tiny UPerNet at the tiny profile's size
    python benchmarks/bench_apgd_overhead.py --settings tiny convnext-t # and UPerNet-ConvNeXt-T, 128x128, batch 2

Settings: ``tiny`` is the tiny profile's evaluated model at its image size and evaluation batch size;
``convnext-t`` is UPerNet-ConvNeXt-T (``upernet_convnext_t_cvst``, 21 classes) at 128x128, batch 2, with
fewer iterations and repeats (it is slow on a CPU). ``--batch``, ``--size``, ``--iters`` and ``--repeats``
override every chosen setting (for quick checks). The ratios go to ``--out`` (default
``results/benchmarks/bench_apgd_overhead.json``, read by the book's performance and status pages).

CPU defaults, chosen so that a shared, busy machine still gives a usable number:

- ``--threads 1 --clock cpu``: the process's CPU time of a single-threaded run, which other processes
  disturb far less than wall-clock time (``--clock wall`` and ``--threads N`` are available).
- glibc's malloc thresholds pinned (``mallopt``; ``--no-pin-malloc`` to keep the defaults). With its
  dynamic thresholds, glibc trims and re-grows the heap depending on the heap layout, and the resulting
  minor page faults (system time, not computation) can add 10-20 % to either loop: here the bare loop of
  a small conv net faulted twice as often as APGD, while APGD faulted more on tiny_upernet_convnext. The
  script records the fault counts. Real CPU runs can get the same effect from the environment variables
  ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` or another allocator (jemalloc, tcmalloc).

On CUDA the wall clock is used, with synchronisation around each timed block.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _bench_common import Timing, add_output_option, add_timing_options, profile_params, timing_setup, write_record
from torch import nn

from robseg_lib.attacks import attack_mode, run_apgd
from robseg_lib.models import create_model

NAME = "bench_apgd_overhead"
TARGET_RATIO = 1.10


@dataclass(frozen=True)
class Setting:
    """One measured configuration: a registered model, its input batch, and how long to measure."""

    model: str
    num_classes: int
    batch: int
    size: int
    iters: int
    repeats: int

    @property
    def label(self) -> str:
        return f"{self.model}, batch {self.batch}, {self.size}x{self.size}"


def named_settings() -> dict[str, Setting]:
    """The settings the issue names: the tiny profile's UPerNet at its size, and UPerNet-ConvNeXt-T at 128x128."""
    ps = profile_params()
    arch = ps.model(ps.default_model()).arch
    return {
        "tiny": Setting(arch, ps.data.num_classes, ps.eval.batch_size, ps.data.image_size, iters=50, repeats=7),
        "convnext-t": Setting("upernet_convnext_t_cvst", 21, batch=2, size=128, iters=5, repeats=3),
    }


def bare_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int) -> None:
    with attack_mode(model):
        for _ in range(n):
            x_in = x.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(x_in), y, ignore_index=255), x_in)


def apgd_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, loss: str) -> None:
    run_apgd(model, x, y, 8 / 255, loss=loss, n_iter=n, radius_reduction=False, early_stop=False)


def measure_setting(setting: Setting, loss: str, timing: Timing) -> dict[str, Any]:
    """Interleaved timings of bare passes and APGD runs of one setting; the median ratio and the medians in ms."""
    torch.manual_seed(0)
    model = create_model(setting.model, num_classes=setting.num_classes).to(timing.device).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(setting.batch, 3, setting.size, setting.size, generator=gen).to(timing.device)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[torch.rand(y.shape, generator=gen).to(timing.device) < 0.1] = 255  # some ignore pixels

    # Warm-up (allocator, kernels), then interleaved measurements.
    bare_loop(model, x, y, 2)
    apgd_run(model, x, y, 2, loss)
    n = setting.iters
    ratios, bare_times, iter_times, bare_faults, iter_faults = [], [], [], [], []
    for _ in range(setting.repeats):
        bare, bare_f = timing.measure(lambda: bare_loop(model, x, y, n))
        full, full_f = timing.measure(lambda: apgd_run(model, x, y, n, loss))
        setup, setup_f = timing.measure(lambda: apgd_run(model, x, y, 0, loss))
        bare_times.append(bare / n)
        iter_times.append((full - setup) / n)
        ratios.append((full - setup) / bare)
        bare_faults.append(bare_f / n)
        iter_faults.append((full_f - setup_f) / n)
    return {
        "setting": setting.label,
        "ratio": statistics.median(ratios),
        "target": TARGET_RATIO,
        **dataclasses.asdict(setting),
        "ratios": ratios,
        "bare_forward_backward_ms": 1e3 * statistics.median(bare_times),
        "apgd_iteration_ms": 1e3 * statistics.median(iter_times),
        "minor_faults_per_iteration": {
            "bare": statistics.median(bare_faults),
            "apgd": statistics.median(iter_faults),
        },
    }


def main(argv: Sequence[str] | None = None) -> Path:
    """Measure the chosen settings, print them and write the JSON record; returns its path."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    named = named_settings()
    parser.add_argument("--settings", nargs="+", choices=sorted(named), default=["tiny"], help="default: tiny")
    parser.add_argument("--batch", type=int, default=None, help="override the settings' batch size")
    parser.add_argument("--size", type=int, default=None, help="override the settings' image size")
    parser.add_argument("--iters", type=int, default=None, help="iterations per timed block (few over-weight checks)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repetitions (median reported)")
    parser.add_argument("--loss", default="mce-bal")
    add_timing_options(parser)
    add_output_option(parser, NAME)
    args = parser.parse_args(argv)
    overrides = {key: getattr(args, key) for key in ("batch", "size", "iters", "repeats")}
    settings = [
        dataclasses.replace(named[name], **{k: v for k, v in overrides.items() if v is not None})
        for name in dict.fromkeys(args.settings)
    ]

    timing = timing_setup(parser, args)
    print(
        f"device: {timing.device}  loss: {args.loss}  threads: {torch.get_num_threads()}  "
        f"clock: {timing.clock_name}  malloc pinned: {timing.malloc_pinned}"
    )
    results = []
    for setting in settings:
        r = measure_setting(setting, args.loss, timing)
        results.append(r)
        faults = r["minor_faults_per_iteration"]
        verdict = "OK" if r["ratio"] <= TARGET_RATIO else "ABOVE TARGET"
        print(f"{r['setting']}:")
        print(f"  bare forward+backward: {r['bare_forward_backward_ms']:.2f} ms (median)")
        print(f"  one APGD iteration:    {r['apgd_iteration_ms']:.2f} ms (median)")
        print(f"  ratios: {', '.join(f'{x:.3f}' for x in r['ratios'])}")
        if timing.device.type == "cpu":
            print(f"  minor page faults per iteration: bare {faults['bare']:.0f}, APGD {faults['apgd']:.0f}")
        ratio = f"{r['ratio']:.3f} (target <= {TARGET_RATIO}) {verdict}"
        print(f"  median ratio APGD iteration / bare forward+backward: {ratio}")
    options = {**vars(args), "clock": timing.clock_name, "malloc_pinned": timing.malloc_pinned}
    return write_record(NAME, results, options, args.out, timing.device)


if __name__ == "__main__":
    main()
