"""Progress bars that respect ``TQDM_DISABLE``.

tqdm reads ``TQDM_DISABLE`` only for arguments the caller leaves unset, and the library always passes
``disable=`` (to honour ``progress=False``), so the variable would be ignored. The book's notebook runs set
it: without this, every executed notebook would store progress-bar widgets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar", "progress_disabled"]


def progress_disabled(enabled: bool = True) -> bool:
    """True when the caller turned progress off or the environment sets ``TQDM_DISABLE`` to a true value."""
    return not enabled or os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A ``tqdm.auto`` bar, disabled by ``enabled=False`` or by ``TQDM_DISABLE``."""
    return tqdm(iterable, disable=progress_disabled(enabled), **kwargs)
