"""Evidence: every finished evaluation of a profile as one tidy table, and the same from the paper's tables."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from robseg_lib.book import experiments
from robseg_lib.book.claims._benchmarks import load_benchmarks
from robseg_lib.book.claims._types import (
    _PAIRS,
    _WORST,
    BENCHMARK_TARGETS,
    MODEL_COLUMNS,
    RESULT_COLUMNS,
    ROBUST_IMAGE_COLUMNS,
    TARGETED_COLUMNS,
    Evidence,
)
from robseg_lib.book.minimum_norm import ROBUST_IMAGES_FILE
from robseg_lib.book.perturbations import TRANSFER_PREFIX
from robseg_lib.book.reporting import paper_rows
from robseg_lib.engines import evaluate, zoo
from robseg_lib.engines.evaluate import EvaluationResult, load_results
from robseg_lib.params import ParamSet
from robseg_lib.paths import profile_results_root

# ---------------------------------------------------------------------------------------------------------
# Evidence from our results


_SETTINGS = re.compile(r"eps(?P<eps>[0-9.e+-]+)_it(?P<it>\d+)_img(?P<img>\d+)_bs(?P<bs>\d+)_seed(?P<seed>\d+)_.+")
_TARGETED = re.compile(
    r"eps(?P<eps>[0-9.e+-]+)_it(?P<it>\d+)_img(?P<img>\d+)_seed(?P<seed>\d+)_target(?P<target>\d+)_(?P<key>\w+)\.pt"
)


def _attack_of(slug: str) -> str | None:
    """The attack spec of a results folder name (``apgd-restarts_mce_3`` -> ``apgd-restarts:mce:3``)."""
    if slug.startswith(TRANSFER_PREFIX):
        return "transfer:" + slug.removeprefix(TRANSFER_PREFIX)
    try:
        return evaluate.parse_attack(slug.replace("_", ":")).name
    except ValueError:
        return None


def _result_rows(result: EvaluationResult, keys: Mapping[str, Any], pairs: bool) -> list[dict[str, Any]]:
    """Rows of one result: clean, each attack, the worst case and, with ``pairs``, SEA's loss pairs."""
    sea = result.sea
    numbers = {"clean": (sea.clean_acc, sea.clean_miou), **sea.per_attack, _WORST: (sea.worst_acc, sea.worst_miou)}
    rows = [
        {**keys, "loss": loss, "acc": 100 * acc, "miou": 100 * miou} | ({"eps_255": 0.0} if loss == "clean" else {})
        for loss, (acc, miou) in numbers.items()
    ]
    if pairs:
        subsets = experiments.loss_subsets(result)
        rows += [
            {**keys, "loss": r.attacks, "acc": r.acc, "miou": r.miou}
            for r in subsets.itertuples()
            if r.attacks != "SEA"
        ]
    return rows


def _run_rows(folder: Path, attack: str, match: re.Match[str], counts: Iterable[int]) -> list[dict[str, Any]]:
    """Rows of a finished run, and of its first n images for each smaller image count n of ``counts`` that is a
    whole number of its batches: what :func:`robseg_lib.engines.evaluate.run` returns for such a request."""
    n_images, batch = int(match["img"]), int(match["bs"])
    keys = {
        "model": folder.parent.name,
        "attack": attack,
        "eps_255": float(match["eps"]),
        "n_iter": int(match["it"]),
        "seed": int(match["seed"]),
        "n_images": n_images,
    }
    result = load_results(folder)
    pairs = attack == "sea" and len(result.attacks) == 3
    rows = _result_rows(result, keys, pairs)
    for n in sorted(n for n in set(counts) if n < n_images and n % batch == 0):
        rows += _result_rows(result.head(n), {**keys, "n_images": n}, pairs)
    return rows


def _models_frame(params: ParamSet) -> pd.DataFrame:
    rows = []
    for name, mp in params.models.items():
        train = params.train_for(name) if params.train is not None else None
        family = next((f for f in ("upernet", "segmenter", "pspnet") if f in mp.arch), mp.arch)
        steps = train.attack_steps if train is not None else 0
        epochs = train.epochs if train is not None else 0
        rows.append({"model": name, "arch": family, "regime": mp.regime, "steps": steps, "epochs": epochs})
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)


def collect_evidence(params: ParamSet) -> Evidence:
    """Gather every finished evaluation, targeted attack and benchmark result of a profile (nothing is run).

    Reads every finished run ``results/<profile>/<attack>/<model>/<settings>/`` (one with a ``summary.json``) from
    its per-image statistics: its numbers, the loss pairs of full SEA runs, and its numbers on its first n images
    for every smaller image count n among the profile's runs (in whole batches). A chapter that asks for fewer
    images gets exactly those from :func:`robseg_lib.engines.evaluate.run`, which writes no folder for them; with them,
    :meth:`Evidence.main` compares all attacks on the same images. Also reads the targeted-attack files of models
    whose zoo key is current (at the main iterations and seed), the minimum-norm comparison the chapter on ALMA prox
    wrote (:data:`robseg_lib.book.minimum_norm.ROBUST_IMAGES_FILE`), and ``results/benchmarks/*.json``. Results of a
    model that was retrained since are not detected here; the chapters' runs refuse them
    (:class:`robseg_lib.engines.evaluate.RunMismatchError`).
    """
    root = profile_results_root(params.profile)
    runs = []
    for summary in sorted(root.glob("*/*/*/summary.json")):
        folder = summary.parent
        attack, match = _attack_of(folder.parent.parent.name), _SETTINGS.fullmatch(folder.name)
        if attack is not None and match is not None:
            runs.append((folder, attack, match))
    counts = {int(match["img"]) for _, _, match in runs}
    rows = [row for folder, attack, match in runs for row in _run_rows(folder, attack, match, counts)]
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    files = []
    for path in root.glob("targeted/*/*.pt"):
        match = _TARGETED.fullmatch(path.name)
        model = path.parent.name
        if match is None or model not in params.models or match["key"] != zoo.model_key(params, model):
            continue
        if (int(match["it"]), int(match["seed"])) == (params.eval.n_iter, params.eval.seed):
            files.append((int(match["img"]), path, match))
    targeted = []
    for _, path, match in sorted(files):  # fewest images first: of several image counts the largest is kept
        model = path.parent.name
        record = torch.load(path, weights_only=True)
        target = int(match["target"])
        targeted.append(
            {
                "model": model,
                "target": target,
                "eps_255": float(match["eps"]),
                "fraction": 100 * float((record["adv_pred"].long() == target).double().mean()),
                "clean_fraction": 100 * float((record["clean_pred"].long() == target).double().mean()),
            }
        )
    targeted_frame = pd.DataFrame(targeted, columns=TARGETED_COLUMNS)
    targeted_frame = targeted_frame.drop_duplicates(["model", "target", "eps_255"], keep="last")
    benchmarks = load_benchmarks(params, BENCHMARK_TARGETS)
    curves = root / ROBUST_IMAGES_FILE
    robust_images = pd.read_csv(curves) if curves.exists() else pd.DataFrame(columns=ROBUST_IMAGE_COLUMNS)
    return Evidence(
        results=results,
        models=_models_frame(params),
        n_iter=params.eval.n_iter,
        seed=params.eval.seed,
        eps=float(params.eval.eps),
        targeted_eps=float(params.eval.targeted_eps),
        targeted=targeted_frame.reset_index(drop=True),
        robust_images=robust_images,
        benchmarks=benchmarks,
        label=params.profile,
    )


# ---------------------------------------------------------------------------------------------------------
# Evidence from the paper's tables

_REGIMES = {"clean": "clean", "AT": "at", "PIR-AT": "pir-at", "DDC-AT": "ddc-at"}
_PAPER_LOSSES = {"JS": "js", "MCE": "mce", "MCE-Bal": "mce-bal", "SEA": _WORST, "none": "clean"}
_PAPER_BASELINES = {"SegPGD": "pgd:segpgd", "CosPGD": "pgd:cospgd-sigmoid"}


def _paper_model(row: Mapping[str, Any]) -> dict[str, Any]:
    steps = 0 if pd.isna(row.get("train_attack_steps")) else float(row["train_attack_steps"])
    epochs = 0 if pd.isna(row.get("epochs")) else float(row["epochs"])
    name = f"{row['dataset']} {row['architecture']} {row['backbone']} {row['training']} {steps:g}s {epochs:g}ep"
    regime = _REGIMES.get(str(row["training"]), str(row["training"]))
    arch = f"{row['dataset']} {row['architecture']} {row['backbone']}"
    return {"model": name, "arch": arch, "regime": regime, "steps": steps, "epochs": epochs}


def paper_evidence() -> Evidence:
    """The paper's Tables 1, 2, 3, 7 and 9 and Fig. 6 as :class:`Evidence` (300 iterations, seed 0, radius 4/255).

    Table 1's CosPGD is recorded as ``pgd:cospgd-sigmoid`` (the variant the paper describes, [U]); Table 9's
    source models are the clean and the AT Segmenter of ADE20K.
    """
    models: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []

    def add(model: dict[str, Any], attack: str, eps: float, loss: str, acc: float, miou: float) -> None:
        models.setdefault(model["model"], model)
        if not (pd.isna(acc) or pd.isna(miou)):
            rows.append(
                {
                    "model": model["model"],
                    "attack": attack,
                    "eps_255": float(eps),
                    "n_iter": 300,
                    "seed": 0,
                    "n_images": 0,
                    "loss": loss,
                    "acc": float(acc),
                    "miou": float(miou),
                }
            )

    for r in paper_rows("table1_attacks").to_dict("records"):
        m = _paper_model(r)
        add(m, "sea", 0, "clean", r["clean_acc"], r["clean_miou"])
        if r["attack"] in _PAPER_BASELINES:
            add(m, _PAPER_BASELINES[r["attack"]], r["eps_255"], _WORST, r["acc"], r["miou"])
        else:
            add(m, "sea", r["eps_255"], _PAPER_LOSSES[r["attack"]], r["acc"], r["miou"])
    for table in ("table3_at_vs_pirat", "table2_robust_models"):
        for r in paper_rows(table).to_dict("records"):
            add(_paper_model(r), "sea", r["eps_255"], _PAPER_LOSSES[r["attack"]], r["acc"], r["miou"])
    for r in paper_rows("table7_loss_pairs").to_dict("records"):
        if r["attacks"] in _PAIRS:
            add(_paper_model(r), "sea", r["eps_255"], r["attacks"], r["acc"], r["miou"])
    base = {"dataset": "ADE20K", "architecture": "Segmenter", "backbone": "ViT-S"}
    target = _paper_model({**base, "training": "PIR-AT", "train_attack_steps": 5, "epochs": 128})
    sources = {
        "clean training (Segmenter ViT-S)": _paper_model({**base, "training": "clean"}),
        "AT 5 steps (Segmenter ViT-S)": _paper_model(
            {**base, "training": "AT", "train_attack_steps": 5, "epochs": 128}
        ),
    }
    for r in paper_rows("table9_transfer").to_dict("records"):
        if r["source_model"] in sources and r["eps_255"] > 0:
            source = sources[r["source_model"]]
            models.setdefault(source["model"], source)
            add(target, f"transfer:{source['model']}", r["eps_255"], _WORST, r["acc"], r["miou"])
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS).drop_duplicates(
        ["model", "attack", "eps_255", "loss"], keep="first"
    )
    fig6 = paper_rows("fig6_robust_images")
    for r in fig6.to_dict("records"):
        m = _paper_model(r)
        models.setdefault(m["model"], m)
    robust_images = fig6.assign(model=[_paper_model(r)["model"] for r in fig6.to_dict("records")])
    return Evidence(
        results=results.reset_index(drop=True),
        models=pd.DataFrame(list(models.values()), columns=MODEL_COLUMNS),
        n_iter=300,
        seed=0,
        eps=4.0,
        robust_images=robust_images[list(ROBUST_IMAGE_COLUMNS)].reset_index(drop=True),
        label="paper",
    )
