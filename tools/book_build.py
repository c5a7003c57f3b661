"""Build the book: offline JavaScript assets, benchmarks, papermill-executed notebooks, then jupyter-book HTML.

``python -m tools.book_build --profile tiny`` (what ``make book`` runs) does four steps:

1. ``fetch_widget_js`` and ``fetch_mathjax`` copy the ipywidgets embedder, RequireJS and MathJax from npm
   packages into ``book/_static/widgets/`` and ``book/_offline/`` (both git-ignored), so widgets and
   formulas render without a network.
2. ``run_benchmarks`` runs each ``benchmarks/bench_*.py`` whose JSON file in ``results/benchmarks/`` is missing
   (all of them with ``--rerun-benchmarks``), so the performance and status pages have numbers.
3. ``execute_notebooks`` runs every ``notebooks/<name>.ipynb`` that the toc lists under ``_generated/``
   with papermill into ``book/_generated/<name>.ipynb``; a notebook whose inputs (the notebook, the
   library, the profile's parameter files, the profile name) are unchanged is not run again.
4. ``build_html`` renders the book with ``jupyter-book build ... -W -n --keep-going``: any warning fails.

Every path is a parameter, so tests build throwaway books in a temporary folder. This module is repository
tooling, not part of the installed package: it sits above the library's stack and its default paths are the
checkout's (:func:`robseg_lib.paths.workspace_root`, with the package installed editable).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from traitlets.config import Config

from robseg_lib.paths import results_root, workspace_root

__all__ = [
    "REPO_ROOT",
    "RESULT_PAGES",
    "BookBuildError",
    "NotebookExecutionError",
    "NotebookRun",
    "benchmark_scripts",
    "build_book",
    "build_html",
    "build_parser",
    "execute_notebooks",
    "fetch_mathjax",
    "fetch_widget_js",
    "input_stamp",
    "main",
    "notebooks_in_toc",
    "run_benchmarks",
]

REPO_ROOT = workspace_root()
_GENERATED = "_generated"
_TRACEBACK_LINES = 25  # lines of a failing notebook's traceback shown in the error
_WARNING_LINES = 60  # warning lines of a failed jupyter-book build shown in the error
_BENCHMARK_PROFILE = "tiny"  # the benchmarks always measure the tiny profile's models and sizes
RESULT_PAGES = ("reproduction_status", "performance")
"""Pages that only read what the other chapters and the benchmarks stored: they run again when results change."""


class BookBuildError(RuntimeError):
    """A step of the book build failed; the message says which and why."""


class NotebookExecutionError(BookBuildError):
    """A notebook raised (or timed out) under papermill; the message holds its name and traceback."""


def _log(message: str) -> None:
    print(f"[book] {message}", flush=True)


# --------------------------------------------------------------------------------------------------
# Offline JavaScript assets from npm


@dataclass(frozen=True)
class _NpmPackage:
    """An exact npm package version and the integrity hash the registry publishes for its tarball."""

    name: str
    version: str
    integrity: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball(self) -> str:
        """File name that ``npm pack`` gives the tarball (scope ``@a/b`` becomes ``a-b``)."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"


# Integrity values are the registry's ``dist.integrity``: a cached or downloaded tarball must match them.
_HTML_MANAGER = _NpmPackage(
    "@jupyter-widgets/html-manager",
    "1.0.15",
    "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
)
_REQUIREJS = _NpmPackage(
    "requirejs",
    "2.3.8",
    "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
)
_MATHJAX = _NpmPackage(
    "mathjax",
    "3.2.2",
    "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
)

# Loaded between require.js and embed-amd.js. The widget bundles locate their icon fonts from the URL that
# RequireJS assigns to each module, which is page-relative by default (and so wrong on every page); point
# the module names at this folder instead, computed from this script's own URL.
_WIDGETS_CONFIG_JS = """\
// Written by tools.book_build: resolve the @jupyter-widgets modules (and their fonts) to this folder.
(function () {
  var src = document.currentScript.src;
  var here = src.substring(0, src.lastIndexOf("/"));
  window.require.config({
    paths: {"@jupyter-widgets": here, "@jupyter-widgets/html-manager/dist": here},
  });
})();
"""

_FONT_NAME = re.compile(r"\b[0-9a-f]{20}\.(?:woff2|woff|ttf|eot|svg)\b")
_MANIFEST = ".manifest.json"
_GITIGNORE = b"# Fetched from npm by tools.book_build at build time.\n*\n"


def _default_npm_cache() -> Path:
    return REPO_ROOT / "cache" / "npm"


def _integrity(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode("ascii")


def _npm_tarballs(packages: Sequence[_NpmPackage], cache_dir: Path) -> dict[_NpmPackage, Path]:
    """Return verified tarballs of ``packages``, running ``npm pack`` only for those not cached yet."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = {package: cache_dir / package.tarball for package in packages}
    missing = [p for p, path in paths.items() if not (path.is_file() and _integrity(path) == p.integrity)]
    if not missing:
        return paths
    npm = shutil.which("npm")
    if npm is None:
        raise BookBuildError(
            "npm not found on PATH: it is needed once to fetch "
            + ", ".join(p.spec for p in missing)
            + " for the offline book (install Node.js >= 18 with npm, then build again)"
        )
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".pack-") as tmp:
        command = [npm, "pack", "--silent", *(p.spec for p in missing)]
        result = subprocess.run(command, cwd=tmp, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
            raise BookBuildError(f"`{' '.join(command[1:])}` failed (exit {result.returncode}):\n{tail}")
        for package in missing:
            packed = Path(tmp) / package.tarball
            if not packed.is_file():
                raise BookBuildError(f"npm pack did not produce {package.tarball} for {package.spec}")
            if _integrity(packed) != package.integrity:
                raise BookBuildError(f"{package.spec}: the tarball from npm does not match the pinned integrity hash")
            os.replace(packed, paths[package])
    return paths


def _member_bytes(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        member = tar.getmember(name)
    except KeyError:
        raise BookBuildError(f"{tar.name}: expected file {name} is missing from the npm package") from None
    handle = tar.extractfile(member)
    if handle is None:
        raise BookBuildError(f"{tar.name}: {name} is not a regular file")
    with handle:
        return handle.read()


def _members_under(tar: tarfile.TarFile, prefix: str) -> dict[str, bytes]:
    """Regular files below ``prefix`` keyed by their path relative to it (no absolute or ``..`` paths)."""
    files = {}
    for member in tar.getmembers():
        if not member.isfile() or not member.name.startswith(prefix + "/"):
            continue
        relative = PurePosixPath(member.name[len(prefix) + 1 :])
        if relative.is_absolute() or ".." in relative.parts:
            raise BookBuildError(f"{tar.name}: unsafe path {member.name} in the npm package")
        files[relative.as_posix()] = _member_bytes(tar, member.name)
    if not files:
        raise BookBuildError(f"{tar.name}: no files under {prefix} in the npm package")
    return files


def _assets_key(packages: Sequence[_NpmPackage], extra: str = "") -> str:
    text = json.dumps([[p.spec, p.integrity] for p in packages] + [extra, _GITIGNORE.decode()])
    return hashlib.sha256(text.encode()).hexdigest()


def _assets_current(target: Path, key: str) -> bool:
    """Whether ``target`` already holds a complete copy of the assets identified by ``key``."""
    try:
        manifest = json.loads((target / _MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("key") == key and all((target / name).is_file() for name in manifest.get("files", []))


def _install_assets(target: Path, files: dict[str, bytes], key: str) -> None:
    """Replace ``target`` by exactly ``files`` plus a manifest (written beside it, then renamed).

    The folder also gets a ``.gitignore`` that ignores it whole: fetched copies never belong in git.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    files = {**files, ".gitignore": _GITIGNORE}
    try:
        for name, data in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        manifest = {"key": key, "files": sorted(files)}
        (staging / _MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def fetch_widget_js(static_dir: Path, cache_dir: Path | None = None) -> Path:
    """Copy the ipywidgets HTML embedder, its fonts and RequireJS into ``static_dir/widgets``.

    myst-nb would load both from CDNs; ``_config.yml`` loads these copies instead (``html_js_files``), so
    saved widget state renders offline. Tarballs are kept in ``cache_dir`` (default ``cache/npm/``) and a
    folder that is already complete is left alone, so only the first build needs npm and the network.

    Args:
        static_dir: The book's ``_static`` folder.
        cache_dir: Where npm tarballs are cached.

    Returns:
        The ``widgets`` folder.
    """
    packages = (_HTML_MANAGER, _REQUIREJS)
    target = Path(static_dir) / "widgets"
    key = _assets_key(packages, _WIDGETS_CONFIG_JS)
    if _assets_current(target, key):
        return target
    tarballs = _npm_tarballs(packages, Path(cache_dir) if cache_dir else _default_npm_cache())
    with tarfile.open(tarballs[_HTML_MANAGER]) as tar:
        embed = _member_bytes(tar, "package/dist/embed-amd.js")
        fonts = sorted(set(_FONT_NAME.findall(embed.decode("utf-8"))))
        files = {font: _member_bytes(tar, f"package/dist/{font}") for font in fonts}
    with tarfile.open(tarballs[_REQUIREJS]) as tar:
        files["require.js"] = _member_bytes(tar, "package/require.js")
    files["config.js"] = _WIDGETS_CONFIG_JS.encode()
    files["embed-amd.js"] = embed
    _install_assets(target, files, key)
    return target


def fetch_mathjax(extra_dir: Path, cache_dir: Path | None = None) -> Path:
    """Copy MathJax 3 (TeX input, CHTML output, its fonts and TeX extensions) into ``extra_dir/_static/mathjax``.

    Sphinx loads MathJax from a CDN by default; ``_config.yml`` points ``mathjax_path`` at this copy so
    formulas render offline. It goes through ``html_extra_path`` (copied as is into the HTML root), not
    ``book/_static``: jupyter-book adds every ``.js`` below its static folders to every page, which would load
    MathJax twice and all its extensions eagerly. Caching as in ``fetch_widget_js``.

    Args:
        extra_dir: The book's ``html_extra_path`` folder (``book/_offline``).
        cache_dir: Where npm tarballs are cached.

    Returns:
        The ``mathjax`` folder.
    """
    target = Path(extra_dir) / "_static" / "mathjax"
    key = _assets_key((_MATHJAX,))
    if _assets_current(target, key):
        return target
    tarball = _npm_tarballs((_MATHJAX,), Path(cache_dir) if cache_dir else _default_npm_cache())[_MATHJAX]
    with tarfile.open(tarball) as tar:
        files = {"tex-mml-chtml.js": _member_bytes(tar, "package/es5/tex-mml-chtml.js")}
        files["LICENSE"] = _member_bytes(tar, "package/LICENSE")
        for prefix in ("output/chtml/fonts/woff-v2", "input/tex/extensions"):
            for name, data in _members_under(tar, f"package/es5/{prefix}").items():
                files[f"{prefix}/{name}"] = data
    _install_assets(target, files, key)
    return target


# --------------------------------------------------------------------------------------------------
# Benchmarks: the JSON files that the performance and status pages read


def benchmark_scripts(root: Path = REPO_ROOT) -> list[Path]:
    """The benchmark scripts ``root/benchmarks/bench_*.py``, sorted by name.

    Args:
        root: Repository root.
    """
    return sorted((Path(root) / "benchmarks").glob("bench_*.py"))


def _run_benchmark(script: Path, out: Path, root: Path) -> None:
    """Run one benchmark script at its defaults in a process of its own, writing its JSON file to ``out``.

    A process of its own, because the scripts set process-wide state (torch threads, malloc thresholds).
    """
    command = [sys.executable, str(script), "--out", str(out)]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    problem = f"failed (exit {result.returncode})" if result.returncode != 0 else f"wrote no {out}"
    if result.returncode != 0 or not out.is_file():
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-_TRACEBACK_LINES:])
        raise BookBuildError(f"benchmark {script.name} {problem}:\n{tail}\nrerun it alone: {sys.executable} {script}")


def run_benchmarks(force: bool = False, *, root: Path = REPO_ROOT) -> list[str]:
    """Run the benchmark scripts whose JSON file is missing; with ``force``, all of them.

    Each of ``benchmark_scripts(root)`` runs at its defaults (the tiny profile's models and sizes, on any
    profile: the files are shared by all) into ``results/benchmarks/<script>.json``
    (``robseg_lib.book.claims.benchmark_path``; ``$ROBSEG_RESULTS`` overrides ``results/``). A file that exists
    is kept as it is; pages that were executed before a re-run show the new numbers only when executed again.

    Args:
        force: Measure again even where the file exists (``--rerun-benchmarks``).
        root: Repository root holding ``benchmarks/``.

    Returns:
        Names of the scripts that ran.

    Raises:
        BookBuildError: A script failed or wrote no file; the message shows the end of its output.
    """
    from robseg_lib import params
    from robseg_lib.book import claims  # deferred: they import torch

    ran = []
    for script in benchmark_scripts(root):
        out = claims.benchmark_path(params.load_params(_BENCHMARK_PROFILE), script.stem)
        if out.is_file() and not force:
            _log(f"benchmark {script.stem}: kept {out}")
            continue
        _log(f"benchmark {script.stem}: measuring ...")
        start = time.perf_counter()
        _run_benchmark(script, out, Path(root))
        _log(f"benchmark {script.stem}: {time.perf_counter() - start:.1f} s, wrote {out}")
        ran.append(script.stem)
    return ran


# --------------------------------------------------------------------------------------------------
# Notebook execution (papermill) with an input-hash cache


@dataclass(frozen=True)
class NotebookRun:
    """Outcome of one notebook in ``execute_notebooks``.

    Attributes:
        name: Notebook name (file stem).
        output: The executed notebook.
        executed: False when the cached output was still valid.
        seconds: Execution time (0 when cached).
    """

    name: str
    output: Path
    executed: bool
    seconds: float


def _toc_files(entries: Any) -> Iterator[str]:
    """Every ``root``/``file`` entry of a (jb-book or jb-article) toc, depth first."""
    if isinstance(entries, list):
        for entry in entries:
            yield from _toc_files(entry)
    elif isinstance(entries, dict):
        for key in ("root", "file"):
            if isinstance(entries.get(key), str):
                yield entries[key]
        for key in ("parts", "chapters", "sections"):
            yield from _toc_files(entries.get(key))


def notebooks_in_toc(toc: Path) -> list[str]:
    """Names of the notebooks that the toc takes from ``_generated/``, in toc order.

    Args:
        toc: A jupyter-book ``_toc.yml``.
    """
    try:
        data = yaml.safe_load(Path(toc).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise BookBuildError(f"cannot read the table of contents {toc}: {err}") from err
    names: list[str] = []
    for file in _toc_files(data):
        parts = PurePosixPath(file).parts
        if len(parts) == 2 and parts[0] == _GENERATED:
            name = parts[1].removesuffix(".ipynb")
            if name not in names:
                names.append(name)
    return names


def _files_under(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def input_stamp(notebook: Path, profile: str, root: Path = REPO_ROOT, results: Path | None = None) -> str:
    """Hash of everything a notebook's output depends on: the notebook, the library, the profile.

    The library part covers every file of ``root/robseg_lib`` (code and packaged paper data), the profile
    part every file of ``root/params/<profile>/`` plus the profile name itself. Contents are hashed, not
    modification times: saving or checking out a file without changing it does not trigger a re-run.
    Pages of :data:`RESULT_PAGES` also depend on the stored results (``results/<profile>/`` and
    ``results/benchmarks/``); for those, paths, sizes and modification times are hashed (results are written
    once, atomically, so a new time means new content).

    Args:
        notebook: The source notebook.
        profile: Profile name passed as the ``profile`` parameter.
        root: Repository root holding ``robseg_lib/`` and ``params/``.
        results: Results root; default :func:`robseg_lib.paths.results_root`.
    """
    root = Path(root)
    library = [p for p in _files_under(root / "robseg_lib") if "profiles" not in p.relative_to(root).parts]
    files = [Path(notebook), *library, *_files_under(root / "params" / profile)]
    digest = hashlib.sha256(f"profile={profile}\n".encode())
    for path in files:
        label = path.relative_to(root) if path.is_relative_to(root) else path
        digest.update(f"{label.as_posix()}\n".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    if Path(notebook).stem in RESULT_PAGES:
        if results is None:
            results = results_root()
        for folder in (Path(results) / profile, Path(results) / "benchmarks"):
            for path in _files_under(folder):
                stat = path.stat()
                digest.update(f"{path.relative_to(results).as_posix()} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _notebook_environment() -> Iterator[None]:
    """Environment for kernels: no tqdm widgets in saved state, and matplotlib's inline backend kept.

    ``MPLBACKEND=Agg`` inherited from a shell would make every figure silently vanish from the outputs.
    """
    saved = {key: os.environ.get(key) for key in ("TQDM_DISABLE", "MPLBACKEND")}
    os.environ["TQDM_DISABLE"] = "1"
    os.environ.pop("MPLBACKEND", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Kernels talk to papermill over local sockets rather than TCP ports: nothing is exposed on the network,
# and ipykernel does not warn about unencrypted TCP on every run. Windows has no IPC transport.
_KERNEL_CONFIG = Config({"KernelManager": {"transport": "ipc"}}) if os.name == "posix" else Config()


def _failure_summary(err: BaseException) -> str:
    """Last lines of the notebook traceback (papermill) or of the exception text (timeouts, dead kernels)."""
    traceback = getattr(err, "traceback", None)
    if isinstance(traceback, list) and traceback:
        text = "\n".join(traceback)
        headline = f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', '')}"
    else:
        text = str(err)
        headline = type(err).__name__
    lines = _ANSI.sub("", text).rstrip().splitlines()[-_TRACEBACK_LINES:]
    return headline + "\n" + "\n".join("    " + line for line in lines)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_stamp(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("stamp")
    except (OSError, ValueError, AttributeError):
        return None


def _check_profile(profile: str, root: Path) -> None:
    params = Path(root) / "params"
    if not (params / profile).is_dir():
        known = sorted(p.name for p in params.iterdir() if p.is_dir()) if params.is_dir() else []
        raise BookBuildError(f"unknown profile {profile!r}: no folder {params / profile} (known: {known})")


def execute_notebooks(
    profile: str,
    names: Iterable[str] | None = None,
    out_dir: Path | None = None,
    force: bool = False,
    timeout: float | None = None,
    *,
    root: Path = REPO_ROOT,
    toc: Path | None = None,
    train_zoo: bool = False,
) -> list[NotebookRun]:
    """Run notebooks with papermill on a profile, skipping those whose inputs did not change.

    Each ``root/notebooks/<name>.ipynb`` runs with kernel ``python3``, parameter ``profile``, working
    directory ``root`` and ``TQDM_DISABLE=1`` (``MPLBACKEND`` removed) into ``out_dir/<name>.ipynb``. The
    ``input_stamp`` of a successful run is kept in ``out_dir/.stamps/<name>.json``; a later call re-runs
    the notebook only if the stamp differs, the output is missing, or ``force`` is set. A run writes to
    ``out_dir/.running/`` first, so a failure never replaces a good output; the failed notebook (with its
    traceback) is moved to ``out_dir/.failed/<name>.ipynb``.

    Args:
        profile: Parameter profile (``tiny``, ``smoke``, ``voc``, ``ade20k``): a folder of ``root/params``.
        names: Notebooks to run; default: those that ``toc`` lists under ``_generated/``.
        out_dir: Output folder; default ``root/book/_generated``.
        force: Run even if the cached output is current.
        timeout: Per-cell execution limit in seconds (``None``: unlimited).
        root: Repository root (``notebooks/``, ``params/``, ``robseg_lib/``).
        toc: Table of contents; default ``root/book/_toc.yml``.
        train_zoo: Before the first notebook that runs, train the profile's missing models in parallel
            (:func:`robseg_lib.engines.zoo.train_zoo`, one single-threaded process per core), instead of one by one
            inside the notebooks that need them.

    Returns:
        One ``NotebookRun`` per notebook, in order.

    Raises:
        NotebookExecutionError: A notebook failed; the message names it, shows the end of its traceback
            and where the failed notebook was kept.
    """
    import papermill  # deferred: papermill's import is slow and only this step needs it

    root = Path(root)
    _check_profile(profile, root)
    out_dir = Path(out_dir) if out_dir is not None else root / "book" / _GENERATED
    if names is None:
        names = notebooks_in_toc(Path(toc) if toc is not None else root / "book" / "_toc.yml")
    names = list(dict.fromkeys(names))
    sources = {name: root / "notebooks" / f"{name}.ipynb" for name in names}
    missing = [str(path) for path in sources.values() if not path.is_file()]
    if missing:
        raise BookBuildError("notebook(s) not found: " + ", ".join(missing))

    stamps = {name: input_stamp(source, profile, root) for name, source in sources.items()}
    current = {
        name
        for name in names
        if not force
        and (out_dir / f"{name}.ipynb").is_file()
        and _read_stamp(out_dir / ".stamps" / f"{name}.json") == stamps[name]
    }
    if train_zoo and len(current) < len(names):
        _train_zoo(profile, root)
    runs = []
    for name, source in sources.items():
        output = out_dir / f"{name}.ipynb"
        stamp_path = out_dir / ".stamps" / f"{name}.json"
        stamp = stamps[name]
        if name in current:
            _log(f"notebook {name}: up to date ({profile})")
            runs.append(NotebookRun(name, output, executed=False, seconds=0.0))
            continue
        _log(f"notebook {name}: executing on profile {profile} ...")
        running = out_dir / ".running" / f"{name}.ipynb"
        running.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            with _notebook_environment():
                papermill.execute_notebook(
                    str(source),
                    str(running),
                    parameters={"profile": profile},
                    kernel_name="python3",
                    cwd=str(root),
                    progress_bar=False,
                    execution_timeout=timeout,
                    config=_KERNEL_CONFIG,
                )
        except Exception as err:
            failed = out_dir / ".failed" / f"{name}.ipynb"
            kept = ""
            if running.is_file():
                failed.parent.mkdir(parents=True, exist_ok=True)
                os.replace(running, failed)
                kept = f"\nfailed notebook kept at {failed}"
            raise NotebookExecutionError(
                f"notebook {name!r} failed on profile {profile!r}: {_failure_summary(err)}{kept}"
            ) from err
        seconds = time.perf_counter() - start
        os.replace(running, output)
        (out_dir / ".failed" / f"{name}.ipynb").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            running.parent.rmdir()  # only if empty
        _write_json(stamp_path, {"stamp": stamp, "profile": profile, "seconds": round(seconds, 1)})
        _log(f"notebook {name}: executed in {seconds:.1f} s")
        runs.append(NotebookRun(name, output, executed=True, seconds=seconds))
    return runs


def _train_zoo(profile: str, root: Path) -> None:
    """Train the profile's missing models in parallel before the notebooks that use them run."""
    from robseg_lib.engines import zoo
    from robseg_lib.params import load_params

    start = time.perf_counter()
    trained = zoo.train_zoo(load_params(root / "params" / profile))
    for label, seconds in trained.items():
        _log(f"zoo: {label} trained in {seconds:.0f} s")
    _log(f"zoo: {len(trained)} job(s) trained in {time.perf_counter() - start:.1f} s")


# --------------------------------------------------------------------------------------------------
# HTML


def _jupyter_book_executable() -> Path:
    executable = Path(sys.executable).with_name("jupyter-book")
    if not executable.is_file():
        raise BookBuildError(
            f"jupyter-book not found next to {sys.executable}: install the book extra (pip install -e '.[book]')"
        )
    return executable


def build_html(book_dir: Path, config: Path, output_dir: Path, strict: bool = True, all_files: bool = True) -> Path:
    """Render the book with ``jupyter-book build`` (nitpicky; with ``strict``, every warning is an error).

    The full log is kept in ``output_dir/_build/jupyter-book.log``.

    Args:
        book_dir: Source folder holding ``_toc.yml`` (paths in ``config`` are relative to it).
        config: The ``_config.yml`` to use.
        output_dir: ``--path-output``: the HTML goes to ``output_dir/_build/html``.
        strict: Pass ``-W``: fail on any warning.
        all_files: Pass ``--all``: re-read every page, so no warning hides in an incremental build.

    Returns:
        ``output_dir/_build/html/index.html``.
    """
    book_dir, output_dir = Path(book_dir), Path(output_dir)
    command = [str(_jupyter_book_executable()), "build", str(book_dir), "--config", str(config)]
    command += ["--toc", str(book_dir / "_toc.yml"), "--path-output", str(output_dir), "-n", "--keep-going"]
    command += ["-W"] * strict + ["--all"] * all_files
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    log = output_dir / "_build" / "jupyter-book.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(result.stdout + result.stderr)
    index = output_dir / "_build" / "html" / "index.html"
    if result.returncode != 0 or not index.is_file():
        lines = _ANSI.sub("", result.stdout + result.stderr).splitlines()
        warnings = [line for line in lines if re.search(r"\b(WARNING|ERROR|CRITICAL|SEVERE)\b", line)]
        shown = warnings[:_WARNING_LINES] or lines[-_WARNING_LINES:]
        more = f"\n... {len(warnings) - len(shown)} more" if len(warnings) > len(shown) else ""
        raise BookBuildError(
            f"jupyter-book build failed (exit {result.returncode}):\n" + "\n".join(shown) + more + f"\nfull log: {log}"
        )
    return index


# --------------------------------------------------------------------------------------------------
# Whole build and command line


def build_book(
    profile: str = "tiny",
    force: bool = False,
    names: Iterable[str] | None = None,
    timeout: float | None = None,
    *,
    root: Path = REPO_ROOT,
    book_dir: Path | None = None,
    config: Path | None = None,
    output_dir: Path | None = None,
    npm_cache: Path | None = None,
    benchmarks: bool = True,
    rerun_benchmarks: bool = False,
    train_zoo: bool = True,
) -> Path:
    """Fetch the offline JS, run missing benchmarks, execute the notebooks (cached), render the HTML; prints timings.

    Args:
        profile: Parameter profile the notebooks run on.
        force: Re-execute notebooks even if their cached outputs are current.
        names: Execute only these notebooks (every notebook of the toc must still have an output).
        timeout: Per-cell execution limit in seconds.
        root: Repository root (``notebooks/``, ``params/``, ``robseg_lib/``).
        book_dir: Book source folder; default ``root/book``. Notebooks go to its ``_generated/``.
        config: ``_config.yml``; default ``root/_config.yml``.
        output_dir: ``--path-output``; default ``root`` (HTML in ``root/_build/html``).
        npm_cache: Cache of npm tarballs; default ``cache/npm/`` of the repository.
        benchmarks: Run the benchmarks whose JSON file is missing (minutes) before the notebooks; ``False``
            leaves the performance page with what is stored (tests build throwaway books this way).
        rerun_benchmarks: Run every benchmark again, not only those whose JSON file is missing.
        train_zoo: Train the profile's missing models in parallel before the first notebook runs
            (:func:`execute_notebooks`); ``False`` leaves training to the notebooks that need a model.

    Returns:
        Path of the built ``index.html``.
    """
    root = Path(root)
    book_dir = Path(book_dir) if book_dir is not None else root / "book"
    config = Path(config) if config is not None else root / "_config.yml"
    output_dir = Path(output_dir) if output_dir is not None else root
    toc = book_dir / "_toc.yml"
    _check_profile(profile, root)
    total = time.perf_counter()

    start = time.perf_counter()
    fetch_widget_js(book_dir / "_static", npm_cache)
    fetch_mathjax(book_dir / "_offline", npm_cache)
    _log(f"offline JS assets ready in {time.perf_counter() - start:.1f} s")

    if benchmarks or rerun_benchmarks:
        start = time.perf_counter()
        measured = run_benchmarks(rerun_benchmarks, root=root)
        _log(f"benchmarks: {len(measured)} measured, {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    generated = book_dir / _GENERATED
    runs = execute_notebooks(profile, names, generated, force, timeout, root=root, toc=toc, train_zoo=train_zoo)
    executed = sum(run.executed for run in runs)
    _log(f"notebooks: {executed} executed, {len(runs) - executed} up to date, {time.perf_counter() - start:.1f} s")
    absent = [name for name in notebooks_in_toc(toc) if not (generated / f"{name}.ipynb").is_file()]
    if absent:
        raise BookBuildError(f"the toc needs notebook(s) never executed: {', '.join(absent)} (omit --only)")

    start = time.perf_counter()
    index = build_html(book_dir, config, output_dir)
    _log(f"HTML built in {time.perf_counter() - start:.1f} s: {index}")
    _log(f"total {time.perf_counter() - total:.1f} s")
    return index


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m tools.book_build``."""
    parser = argparse.ArgumentParser(prog="python -m tools.book_build", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny", help="parameter profile: tiny (default), smoke, voc, ade20k")
    parser.add_argument("--force", action="store_true", help="re-execute notebooks even if up to date")
    parser.add_argument(
        "--only", nargs="+", action="extend", metavar="NAME", help="execute only these notebooks (file stems)"
    )
    parser.add_argument("--no-html", action="store_true", help="execute the notebooks, skip the HTML build")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="per-cell time limit")
    parser.add_argument(
        "--rerun-benchmarks",
        action="store_true",
        help="measure every benchmark again (default: only those without a results/benchmarks/ file)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the book build chosen on the command line; returns the exit status (1 on a build failure)."""
    args = build_parser().parse_args(argv)
    try:
        if args.no_html:
            _check_profile(args.profile, REPO_ROOT)  # before the benchmarks, which take minutes
            run_benchmarks(args.rerun_benchmarks)
            execute_notebooks(args.profile, args.only, force=args.force, timeout=args.timeout, train_zoo=True)
        else:
            index = build_book(
                args.profile, args.force, args.only, args.timeout, rerun_benchmarks=args.rerun_benchmarks
            )
            print(f"open {index.as_uri()}")
    except BookBuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
