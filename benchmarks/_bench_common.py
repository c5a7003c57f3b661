"""Shared by the benchmark scripts: the tiny profile's sizes, CPU-time measurement and the JSON record.

Every script writes one JSON file (``results/benchmarks/<script>.json`` by default, see
:func:`robseg_lib.book.claims.benchmark_path`) holding::

    {"benchmark": "<script>", "date": "<UTC, ISO 8601>", "machine": {...}, "options": {...},
     "results": [{"setting": "<what was measured>", "ratio": 1.02, "target": 1.10, ...}, ...]}

``ratio`` and ``target`` are present in the results of the scripts that check a cost target
(:data:`robseg_lib.book.claims.BENCHMARK_TARGETS`); each result also holds its timings in ms.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from robseg_lib._io import atomic_json_dump
from robseg_lib.book import claims
from robseg_lib.params import ParamSet, load_params

PROFILE = "tiny"
"""The profile whose model, image size and batch sizes are the scripts' defaults (the book's benchmarks)."""


def profile_params() -> ParamSet:
    """The parameters of :data:`PROFILE`."""
    return load_params(PROFILE)


def default_out(name: str) -> Path:
    """``results/benchmarks/<name>.json`` (``$ROBSEG_RESULTS/benchmarks/`` when set): where the claims look."""
    return claims.benchmark_path(profile_params(), name)


def add_output_option(parser: argparse.ArgumentParser, name: str) -> None:
    """Add ``--out`` (default :func:`default_out` of ``name``)."""
    parser.add_argument("--out", type=Path, default=None, help=f"JSON output (default: {default_out(name)})")


def add_timing_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--device``, ``--threads``, ``--clock`` and ``--no-pin-malloc`` (see :func:`timing_setup`)."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU only)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default=None, help="default: cpu on CPU, wall on CUDA")
    parser.add_argument("--no-pin-malloc", action="store_true", help="keep glibc's dynamic malloc thresholds")


@dataclass(frozen=True)
class Timing:
    """How a script measures: the clock, its name, the device, and whether malloc's thresholds are pinned."""

    clock: Callable[[], float]
    clock_name: str
    device: torch.device
    malloc_pinned: bool

    def measure(self, fn: Callable[[], object]) -> tuple[float, int]:
        """(time, minor page faults) of one call of ``fn``; CUDA is synchronised around it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        faults, start = _faults(), self.clock()
        fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return self.clock() - start, _faults() - faults


def timing_setup(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Timing:
    """Apply the options of :func:`add_timing_options` to this process.

    On CPU: the process's CPU time of a ``--threads`` run (default 1), which other processes disturb far less
    than wall-clock time, and glibc's malloc thresholds pinned (:func:`pin_malloc`). On CUDA: the wall clock.
    """
    device = torch.device(args.device)
    clock_name = args.clock or ("cpu" if device.type == "cpu" else "wall")
    if clock_name == "cpu" and device.type != "cpu":
        parser.error("--clock cpu measures host CPU time; use --clock wall with CUDA")
    pinned = device.type == "cpu" and not args.no_pin_malloc and pin_malloc()
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    return Timing(clock, clock_name, device, pinned)


def pin_malloc() -> bool:
    """Fix glibc's mmap threshold (32 MiB, its maximum) and trim threshold (1 GiB); False if not glibc.

    With its dynamic thresholds, glibc trims and re-grows the heap depending on the heap layout, and the
    resulting minor page faults (system time, not computation) can add 10-20 % to either side of a comparison.
    Real CPU runs can get the same effect from ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` or
    another allocator (jemalloc, tcmalloc).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """The machine a benchmark ran on: CPUs, torch threads and version, platform (and the GPU, on CUDA)."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_record(
    name: str,
    results: Sequence[Mapping[str, Any]],
    options: Mapping[str, Any],
    out: Path | None,
    device: torch.device | None = None,
) -> Path:
    """Write a benchmark's JSON record atomically (format in the module docstring).

    Args:
        name: The script's name (``bench_apgd_overhead``).
        results: One entry per measured setting, each with a ``setting`` label.
        options: How it was measured (the command-line options, clock, malloc pinning).
        out: Output file; ``None``: :func:`default_out`.
        device: The torch device measured (its GPU name is recorded on CUDA).

    Returns:
        The written file.
    """
    record = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(device),
        "options": {key: str(value) if isinstance(value, Path) else value for key, value in options.items()},
        "results": [dict(result) for result in results],
    }
    path = atomic_json_dump(record, out if out is not None else default_out(name))
    print(f"wrote {path}")
    return path
