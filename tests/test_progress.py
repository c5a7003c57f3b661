"""Progress bars obey both the caller and TQDM_DISABLE (notebook runs must not store bar widgets)."""

import pytest

from robseg_lib._progress import progress_bar, progress_disabled


@pytest.mark.parametrize(
    ("env", "enabled", "disabled"),
    [("", True, False), ("1", True, True), ("0", True, False), ("", False, True), ("true", True, True)],
)
def test_progress_disabled(monkeypatch, env, enabled, disabled):
    monkeypatch.setenv("TQDM_DISABLE", env)
    assert progress_disabled(enabled) is disabled
    assert progress_bar(range(3), enabled=enabled).disable is disabled
