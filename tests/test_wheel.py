"""The wheel runs its default outside the checkout: profiles ship with it, the book tooling does not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the package sources (the build must not write into the checkout)."""
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(ROOT / "robseg_lib", src / "robseg_lib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), "."]
    subprocess.run(cmd, cwd=src, check=True)
    (built,) = out.glob("robseg_lib-*.whl")
    return built


def test_wheel_holds_the_profiles_and_not_the_tooling(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    for profile in ("tiny", "smoke", "voc", "ade20k"):
        assert any(n.startswith(f"robseg_lib/profiles/{profile}/") and n.endswith(".yaml") for n in names), profile
    assert "robseg_lib/paper_data/table1_attacks.csv" in names
    assert not [n for n in names if n.startswith(("tools/", "tests/", "notebooks/"))]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_installed_wheel_runs_its_default_outside_the_checkout(wheel: Path, tmp_path: Path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True)
    # The dependencies come from this environment's site-packages, added after the new venv's own: a .pth
    # line adds the folder but runs none of its .pth files, so the checkout's editable install stays out.
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()

    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBSEG_")}

    def run(*args: str) -> str:
        done = subprocess.run([python, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    usage = run("-m", "robseg_lib", "sea", "--params", "tiny", "--help")
    assert "--checkpoint" in usage and "--eps" in usage
    loaded = run(
        "-c",
        "import robseg_lib; from robseg_lib.params import load_params; from robseg_lib import paths; "
        "p = load_params('tiny'); print(robseg_lib.__file__); print(p.profile, sorted(p.models)[:1]); "
        "print(paths.cache_root())",
    ).splitlines()
    assert loaded[0].startswith(str(env_dir)), f"imported {loaded[0]}, not the installed wheel"
    assert loaded[1].startswith("tiny [")
    assert loaded[2] == str(work / "cache"), "an installed package keeps its cache in the current directory"
