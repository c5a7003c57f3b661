"""robseg_lib.paths: the one owner of the profiles, cache and results folders."""

from __future__ import annotations

from pathlib import Path

from robseg_lib import paths

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_in_a_checkout(monkeypatch):
    for var in (paths.PARAMS_ENV, paths.CACHE_ENV, paths.RESULTS_ENV):
        monkeypatch.delenv(var, raising=False)
    assert paths.workspace_root() == ROOT
    assert paths.params_root() == ROOT / "robseg_lib" / "profiles"
    assert (ROOT / "params").resolve() == paths.params_root(), "params/ of the checkout shows the packaged profiles"
    assert paths.cache_root() == ROOT / "cache"
    assert paths.results_root() == ROOT / "results"
    assert paths.profile_results_root("tiny") == ROOT / "results" / "tiny"


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.PARAMS_ENV, str(tmp_path / "p"))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "c"))
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path / "r"))
    assert (paths.params_root(), paths.cache_root(), paths.results_root()) == (
        tmp_path / "p",
        tmp_path / "c",
        tmp_path / "r",
    )
    assert paths.cache_root(tmp_path / "explicit") == tmp_path / "explicit"
