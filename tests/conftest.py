"""Fixtures shared by test modules."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of ``book/`` (without generated or fetched files) and ``_config.yml`` in a session folder.

    The notebook tests execute the chapters on the ``smoke`` profile into its ``_generated/`` and the book test
    renders it: both go through ``book_build``'s input stamps, so each chapter runs once per session. Models and
    results go to the same folder (``ROBSEG_CACHE``, ``ROBSEG_RESULTS``, inherited by the kernels), so that runs
    left in the checkout's ``cache/`` and ``results/`` by older code never decide a test.
    """
    folder = tmp_path_factory.mktemp("smoke_book")
    book = folder / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_generated", "_static", "_offline"))
    shutil.copy(ROOT / "_config.yml", folder / "_config.yml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROBSEG_CACHE", str(folder / "cache"))
        mp.setenv("ROBSEG_RESULTS", str(folder / "results"))
        yield book


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for the test: tiny convolutions run far faster so, above all on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
