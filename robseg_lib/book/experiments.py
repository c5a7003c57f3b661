"""The evaluation chapters' experiments: sweeps of zoo models x radii x attacks, and the book's tables.

Each run is one :class:`robseg_lib.engines.evaluate.Evaluation` (an attack spec on a zoo model at a radius),
evaluated by :func:`robseg_lib.engines.evaluate.run` or read back from its results folder. The helpers below turn
runs into the book's tidy tables (Acc and mIoU in %), recombine SEA's stored per-image statistics into loss subsets
(Table 7) and put ours beside the paper's.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.figure import Figure

from robseg_lib.attacks import SEAResult
from robseg_lib.book.reporting import PAPER_ATTACK_NAMES, paper_rows
from robseg_lib.engines import evaluate
from robseg_lib.engines.evaluate import EvaluationResult
from robseg_lib.metrics import SegStats
from robseg_lib.params import ParamSet

__all__ = [
    "SEA_TABLES",
    "attack_summary",
    "clean_beside",
    "counterpart_label",
    "ensemble",
    "grouped_bars",
    "iteration_curves",
    "loss_subsets",
    "middle_radius",
    "paper_counterpart",
    "paper_model_rows",
    "paper_seed_spread",
    "paper_table1",
    "pirat_vs_at",
    "radius_label",
    "seed_spread",
    "select_models",
    "side_by_side",
    "strongest",
    "sweep",
    "sweep_images",
    "wide",
]

_METRICS = {"acc": "Acc", "miou": "mIoU"}
_SUMMARY_FILE = "summary.json"
# Loss order of the paper's pair names in Table 7 ("MCE+MCE-Bal", "MCE+JS", "JS+MCE-Bal").
_PAIR_ORDER = ("mce", "js", "mce-bal")


def ensemble(results: Sequence[EvaluationResult]) -> SEAResult:
    """SEA's worst cases over the attacks of several runs on the same images (e.g. three single-loss runs).

    Raises:
        ValueError: the runs cover different images or predictions without attack, or repeat an attack name.
    """
    if not results:
        raise ValueError("need at least one result")
    clean = results[0].sea.clean_stats
    stats: dict[str, SegStats] = {}
    for result in results:
        if not torch.equal(result.sea.clean_stats.intersection, clean.intersection):
            raise ValueError(f"{result.out_dir} covers other images or another model than {results[0].out_dir}")
        for name, s in result.sea.attack_stats.items():
            if name in stats:
                raise ValueError(f"attack {name!r} occurs in more than one run")
            stats[name] = s
    return SEAResult.from_stats(clean, stats, seed=results[0].run["seed"])


# ---------------------------------------------------------------------------------------------------------
# Tables


def select_models(params: ParamSet, **fields: object) -> list[str]:
    """Names of the profile's models whose fields all match, in ``models.yaml`` order.

    Fields: ``regime``, ``arch`` (substring of the architecture name, e.g. ``"upernet"``), ``init``, and the
    effective training fields ``attack_steps`` and ``epochs``.
    """
    valid = {"regime", "arch", "init", "attack_steps", "epochs"}
    unknown = sorted(set(fields) - valid)
    if unknown:
        raise ValueError(f"unknown model field(s) {unknown}; valid: {', '.join(sorted(valid))}")
    names = []
    for name, mp in params.models.items():
        train = params.train_for(name) if params.train is not None else None
        values = {
            "regime": mp.regime,
            "init": mp.init,
            "attack_steps": None if train is None else train.attack_steps,
            "epochs": None if train is None else train.epochs,
        }
        arch_ok = "arch" not in fields or str(fields["arch"]) in mp.arch
        if arch_ok and all(values[k] == v for k, v in fields.items() if k != "arch"):
            names.append(name)
    return names


def radius_label(eps: float) -> str:
    """``"clean"`` for 0, else ``"4/255"``."""
    return "clean" if eps == 0 else f"{eps:g}/255"


def _display(loss: str) -> str:
    return "worst case" if loss == "worst case" else PAPER_ATTACK_NAMES.get(loss, loss)


def _rows(sea: SEAResult, **keys: object) -> list[dict[str, object]]:
    parts = dict(sea.per_attack)
    if len(parts) > 1:
        parts["worst case"] = (sea.worst_acc, sea.worst_miou)
    return [
        {**keys, "loss": loss, "name": _display(loss), "acc": 100 * acc, "miou": 100 * miou}
        for loss, (acc, miou) in parts.items()
    ]


def sweep(
    params: ParamSet,
    models: Sequence[str],
    radii: Sequence[float] | Mapping[str, Sequence[float]],
    attacks: Sequence[str] | Mapping[str, str | Sequence[str]] = ("sea",),
    *,
    seeds: Sequence[int] | None = None,
    n_iter: int | None = None,
    n_images: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
) -> pd.DataFrame:
    """Run (or read) every model x radius x attack x seed and return one tidy table, Acc and mIoU in %.

    Args:
        params: the profile.
        models: zoo model names.
        radii: radii in /255, for every model or per model name.
        attacks: specs, or ``{label: spec or list of specs}``; a list is one ensemble (worst case over its runs,
            e.g. three ``apgd-const`` runs).
        seeds: seeds to run (default: the profile's).
        n_iter, n_images, batch_size, device: override ``params.eval``.

    Returns:
        Columns ``model, eps_255, radius_rank, attack, loss, name, seed, n_iter, n_images, acc, miou``: one row per
        attacked loss and, for several losses, one ``"worst case"`` row; one clean row per model (``eps_255`` 0,
        ``attack`` ``"none"``, ``loss`` ``"clean"``). ``radius_rank`` numbers a model's radii 1, 2, ... (0: clean)
        and ``name`` is the paper's name of the loss.
    """
    labelled = dict(attacks) if isinstance(attacks, Mapping) else {spec: spec for spec in attacks}
    seeds = [params.eval.seed] if seeds is None else list(seeds)
    ev = params.eval_with(n_iter=n_iter, n_images=n_images, batch_size=batch_size, device=device)
    settings: dict[str, Any] = {
        "n_iter": ev.n_iter,
        "n_images": ev.n_images,
        "batch_size": ev.batch_size,
        "device": ev.device,
    }
    rows: list[dict[str, object]] = []
    for model in models:
        model_radii = sorted(radii[model] if isinstance(radii, Mapping) else radii)
        for seed, (rank, eps), (label, specs) in itertools.product(
            seeds, enumerate(model_radii, start=1), labelled.items()
        ):
            runs = [
                evaluate.run(evaluate.Evaluation.of(params, model, eps=eps, attack=s, seed=seed, **settings))
                for s in _as_list(specs)
            ]
            sea = runs[0].sea if len(runs) == 1 else ensemble(runs)
            keys = {"model": model, "eps_255": eps, "radius_rank": rank, "attack": label, "seed": seed}
            keys |= {"n_iter": ev.n_iter, "n_images": runs[0].n_images}
            if rank == 1 and seed == seeds[0] and label == next(iter(labelled)):
                clean = {"eps_255": 0, "radius_rank": 0, "attack": "none", "n_iter": 0, "loss": "clean"}
                rows.append(keys | clean | {"name": "clean", "acc": 100 * sea.clean_acc, "miou": 100 * sea.clean_miou})
            rows += _rows(sea, **keys)
    columns = ["model", "eps_255", "radius_rank", "attack", "loss", "name", "seed", "n_iter", "n_images", "acc", "miou"]
    return pd.DataFrame(rows, columns=columns)


def _as_list(specs: str | Sequence[str]) -> list[str]:
    return [specs] if isinstance(specs, str) else list(specs)


def loss_subsets(result: EvaluationResult, sizes: Sequence[int] = (2,)) -> pd.DataFrame:
    """Worst cases over subsets of a run's attacks, recombined from its stored per-image statistics (Table 7).

    No attack is rerun: per image the lowest accuracy over the subset, and the greedy worst-case mIoU over
    one of the subset's attacks per image (with the run's seed). The full set is always included, named
    ``"SEA"``; subsets are named like the paper's Table 7 (``"MCE+MCE-Bal"``).

    Returns:
        Columns ``attacks, n_losses, acc, miou`` (in %).
    """
    names = list(result.attacks)
    order = {loss: i for i, loss in enumerate(_PAIR_ORDER)}
    rows = []
    for size in [*sorted(set(sizes) - {len(names)}), len(names)]:
        for subset in itertools.combinations(names, size):
            sea = SEAResult.from_stats(
                result.sea.clean_stats, {k: result.sea.attack_stats[k] for k in subset}, seed=result.run["seed"]
            )
            ordered = sorted(subset, key=lambda loss: order.get(loss, len(order)))
            label = "SEA" if size == len(names) else "+".join(_display(loss) for loss in ordered)
            rows.append({"attacks": label, "n_losses": size, "acc": 100 * sea.worst_acc, "miou": 100 * sea.worst_miou})
    return pd.DataFrame(rows)


def wide(
    frame: pd.DataFrame, index: str | Sequence[str], columns: str = "name", order: Sequence[str] | None = None
) -> pd.DataFrame:
    """A tidy table (ours or the paper's: columns ``acc``, ``miou``) as rows ``index`` x columns
    (``columns`` value, Acc/mIoU), rounded to 1 decimal; radii (``eps_255``) read ``"clean"``, ``"4/255"``, as ``ε``.
    """
    index = [index] if isinstance(index, str) else list(index)
    data = frame.rename(columns=_METRICS)
    if "eps_255" in (columns, *index):
        data = data.sort_values("eps_255", kind="stable")
        data = data.assign(eps_255=data["eps_255"].map(radius_label)).rename(columns={"eps_255": "ε"})
        index = ["ε" if key == "eps_255" else key for key in index]
        columns = "ε" if columns == "eps_255" else columns
    top = list(order or dict.fromkeys(data[columns]))
    metrics = list(_METRICS.values())
    if data.empty:
        return pd.DataFrame(columns=pd.MultiIndex.from_product([top, metrics]))
    table = data.pivot_table(index=index, columns=columns, values=metrics, sort=False).swaplevel(0, 1, axis=1)
    table = table.reindex(columns=pd.MultiIndex.from_product([top, metrics]))
    table.columns.names = [None, None]
    return table.astype(float).round(1)


def clean_beside(frame: pd.DataFrame, name: str = "name") -> pd.DataFrame:
    """A tidy table with each model's clean row (``name == "clean"``, ``eps_255`` 0) repeated at each of its radii,
    so that :func:`wide` shows the clean numbers as a column next to the attacks (as the paper's Table 1 does)."""
    clean = frame[frame[name] == "clean"].set_index("model")
    attacked = frame[frame[name] != "clean"]
    radii = attacked.drop_duplicates(["model", "eps_255"])[["model", "eps_255", "radius_rank"]]
    repeated = radii.join(clean.drop(columns=["eps_255", "radius_rank"]), on="model")
    return pd.concat([repeated, attacked], ignore_index=True)


def pirat_vs_at(params: ParamSet, frame: pd.DataFrame) -> pd.DataFrame:
    """SEA's worst-case Acc and mIoU of each PIR-AT model minus those of its AT twin (same architecture, attack
    steps and epochs) in a :func:`sweep` table, in points per radius: positive means PIR-AT is more robust."""
    worst = frame[frame["loss"] == "worst case"].set_index(["model", "eps_255"])[list(_METRICS)]
    present = set(worst.index.get_level_values("model"))

    def recipe(name: str) -> tuple[str, int, int]:
        train = params.train_for(name)
        return params.model(name).arch, train.attack_steps, train.epochs

    rows = {}
    for pir in [m for m in select_models(params, regime="pir-at") if m in present]:
        for at in [m for m in select_models(params, regime="at") if m in present and recipe(m) == recipe(pir)]:
            diff = (worst.loc[pir] - worst.loc[at]).stack()
            rows[f"{pir} - {at}"] = {f"{radius_label(e)} {_METRICS[m]}": v for (e, m), v in diff.items()}
    return pd.DataFrame.from_dict(rows, orient="index").round(1)


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame, labels: tuple[str, str] = ("ours", "paper")) -> pd.DataFrame:
    """Two wide tables with the same row labels next to each other under a top column level (ours first)."""
    joined = pd.concat({labels[0]: ours, labels[1]: paper.reindex(ours.index)}, axis=1)
    return joined.round(1)


# ---------------------------------------------------------------------------------------------------------
# The paper's counterparts


def paper_counterpart(params: ParamSet, model_name: str) -> dict[str, object] | None:
    """Filters selecting the paper's model that a zoo model stands for (Tables 2, 3, 6), or ``None``.

    UPerNet models stand for the paper's PASCAL-VOC UPerNet + ConvNeXt, Segmenter models for its ADE20K
    Segmenter + ViT-S (the paper trains Segmenter on ADE20K only). On DigitScenes the training budget E (the
    profile's ``train.epochs``) stands for the paper's main budget (50 VOC / 128 ADE20K epochs) and a longer
    budget for the paper's long VOC schedule (300 epochs).
    """
    mp = params.model(model_name)
    if params.train is None:
        return None
    train = params.train_for(model_name)
    if "segmenter" in mp.arch:
        found: dict[str, object] = {"dataset": "ADE20K", "architecture": "Segmenter", "backbone": "ViT-S"}
        budgets: tuple[int, int | None] = (128, None)
    elif "upernet" in mp.arch:
        backbone = "ConvNeXt-S" if "convnext_s" in mp.arch else "ConvNeXt-T"
        found = {"dataset": "PascalVOC", "architecture": "UPerNet", "backbone": backbone}
        budgets = (50, 300)
    else:
        return None
    if params.data.name == "digitscenes":
        epochs = budgets[train.epochs > params.train.epochs]
    else:
        found["dataset"] = {"voc": "PascalVOC", "ade20k": "ADE20K"}[params.data.name]
        epochs = train.epochs
    if epochs is None:
        return None
    training = {"clean": "clean", "at": "AT", "pir-at": "PIR-AT"}[mp.regime]
    return {**found, "training": training, "train_attack_steps": train.attack_steps, "epochs": epochs}


SEA_TABLES: tuple[str, ...] = ("table3_at_vs_pirat", "table2_robust_models")
"""The paper's tables of clean and SEA numbers per model (Table 3 has every UPerNet-ConvNeXt-T variant)."""


def paper_model_rows(params: ParamSet, models: Sequence[str], tables: Sequence[str] = SEA_TABLES) -> pd.DataFrame:
    """The paper's rows for the counterparts of zoo models (:func:`paper_counterpart`), from the first of
    ``tables`` that has them, with our model name in column ``model`` (models without a counterpart: no rows).
    """
    parts = []
    for model in models:
        filters = paper_counterpart(params, model)
        if filters is None:
            continue
        for table in tables:
            rows = paper_rows(table, **filters)
            if len(rows):
                parts.append(rows.assign(model=model, table=table))
                break
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["model", "eps_255", "acc", "miou"])


def counterpart_label(params: ParamSet, model_name: str) -> str:
    """The paper's counterpart of a zoo model in words, e.g. ``"PascalVOC UPerNet ConvNeXt-T, PIR-AT 5 steps,
    50 ep."``; ``"-"`` if it has none."""
    c = paper_counterpart(params, model_name)
    if c is None:
        return "-"
    steps = f" {c['train_attack_steps']} steps" if c["training"] != "clean" else ""
    return f"{c['dataset']} {c['architecture']} {c['backbone']}, {c['training']}{steps}, {c['epochs']:g} ep."


def strongest(frame: pd.DataFrame, by: Sequence[str], among: str = "name") -> pd.DataFrame:
    """Per group of ``by``, the value(s) of ``among`` with the lowest Acc and with the lowest mIoU (ties joined);
    radii (``eps_255``) read ``"4/255"``, as ``ε``."""
    rows = []
    for key, part in frame.groupby(list(by), sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        for metric, label in _METRICS.items():
            lowest = part[metric].min()
            row[f"lowest {label}"] = ", ".join(part.loc[part[metric] <= lowest + 1e-9, among].astype(str))
        rows.append(row)
    table = pd.DataFrame(rows)
    if "eps_255" in table:
        table = table.assign(eps_255=table["eps_255"].map(radius_label)).rename(columns={"eps_255": "ε"})
    return table


def attack_summary(
    frame: pd.DataFrame,
    by: Sequence[str],
    name: str = "name",
    baselines: Sequence[str] = ("CosPGD", "SegPGD"),
    ensemble_name: str = "SEA",
) -> pd.DataFrame:
    """Per group (model and radius): the strongest single attack for Acc and for mIoU (ties listed), and how
    many points SEA lies below the best of the PGD baselines (positive: SEA is stronger)."""
    singles = frame[~frame[name].isin([ensemble_name, "clean", "none"])]
    summary = strongest(singles, by, among=name)
    summary.columns = [c.replace("lowest", "strongest") for c in summary.columns]
    grouped = frame.set_index([*by, name])
    for metric, label in _METRICS.items():
        values = grouped[metric].unstack(name)
        gain = values[[b for b in baselines if b in values]].min(axis=1) - values[ensemble_name]
        summary[f"SEA gain {label}"] = gain.to_numpy()
    return summary.round(1)


def seed_spread(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds (sample std, ddof 1) of a SEA :func:`sweep` with several seeds,
    rows (radius, attack; the worst case named SEA), rounded to 1 decimal."""
    attacked = frame[frame["loss"] != "clean"].assign(eps_255=frame["eps_255"].map(radius_label))
    attacked = attacked.replace({"name": {"worst case": "SEA"}})
    spread = attacked.groupby(["eps_255", "name"], sort=False)[list(_METRICS)].agg(["mean", "std"])
    spread.columns = pd.MultiIndex.from_tuples([(_METRICS[m], s) for m, s in spread.columns])
    spread.index.names = ["ε", "attack"]
    return spread.round(1)


_TABLE1_ROLES: dict[str, dict[str, str]] = {
    "clean": {"dataset": "PascalVOC", "training": "clean"},
    "AT": {"dataset": "ADE20K", "training": "AT"},
    "PIR-AT": {"dataset": "PascalVOC", "training": "PIR-AT"},
}


def paper_table1(architecture: str = "UPerNet", backbone: str = "ConvNeXt-T") -> pd.DataFrame:
    """The paper's Table 1 rows of its clean (PASCAL-VOC), 2-step AT (ADE20K) and PIR-AT (PASCAL-VOC) models as a
    tidy table like :func:`sweep`'s: ``model`` is the role, ``attack`` the paper's attack name (clean rows:
    ``"clean"`` at ``eps_255`` 0), ``radius_rank`` numbers each model's radii 1, 2, 3."""
    parts = []
    for role, filters in _TABLE1_ROLES.items():
        rows = paper_rows("table1_attacks", architecture=architecture, backbone=backbone, **filters)
        if rows.empty:
            continue
        rows = rows.assign(model=role, radius_rank=rows["eps_255"].rank(method="dense").astype(int))
        clean = rows.iloc[:1].assign(eps_255=0, radius_rank=0, attack="clean", acc=rows["clean_acc"].iloc[0])
        parts += [clean.assign(miou=rows["clean_miou"].iloc[0]), rows]
    columns = ["model", "eps_255", "radius_rank", "attack", "acc", "miou"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def paper_seed_spread(**filters: object) -> pd.DataFrame:
    """The paper's Table 8 (mean and std over 3 seeds) in the layout of :func:`seed_spread`."""
    paper = paper_rows("table8_seeds", **filters)
    table = paper.assign(ε=paper["eps_255"].map(radius_label)).set_index(["ε", "attack"])
    table = table[[f"{m}_{s}" for m in _METRICS for s in ("mean", "std")]]
    table.columns = pd.MultiIndex.from_tuples([(_METRICS[m], s) for m in _METRICS for s in ("mean", "std")])
    return table.round(1)


def middle_radius(frame: pd.DataFrame) -> float:
    """The radius of a one-model :func:`sweep` at which the model is neither intact nor broken: SEA's worst-case
    mIoU closest to half the clean mIoU (ties: the smaller radius).

    Raises:
        ValueError: the frame holds no clean row or no worst-case row.
    """
    clean = frame.loc[frame["loss"] == "clean", "miou"]
    worst = frame[frame["name"] == "worst case"]
    if clean.empty or worst.empty:
        raise ValueError("middle_radius needs a sweep with a clean row and worst-case rows")
    distance = (worst["miou"] - clean.iloc[0] / 2).abs()
    return float(worst.assign(distance=distance).sort_values(["distance", "eps_255"])["eps_255"].iloc[0])


def sweep_images(params: ParamSet) -> int:
    """Images of the cheaper sweeps: half of the profile's evaluated images, in whole batches (at least one),
    so that they are read from the profile's own SEA runs where those exist."""
    n = params.eval.n_images if params.eval.n_images is not None else len(evaluate.validation_set(params.data))
    batch = params.eval.batch_size
    return max(batch, n // 2 // batch * batch)


# ---------------------------------------------------------------------------------------------------------
# Figures


def grouped_bars(
    frame: pd.DataFrame,
    x: str,
    hue: str,
    panels: str,
    metrics: Sequence[str] = ("acc", "miou"),
    title: str = "",
    xlabel: str = "",
) -> Figure:
    """Grouped bars of a tidy table: one panel per metric x ``panels`` value, ``x`` groups, one bar per ``hue``."""
    keys = list(dict.fromkeys(frame[panels]))
    fig, axes = plt.subplots(
        len(metrics), len(keys), figsize=(4.2 * len(keys), 3.0 * len(metrics)), squeeze=False, sharey="row"
    )
    for (metric, key), ax in zip(itertools.product(metrics, keys), axes.flat, strict=True):
        part = frame[frame[panels] == key].pivot_table(index=x, columns=hue, values=metric, sort=False)
        part.plot.bar(ax=ax, rot=0, width=0.8, legend=False)
        ax.set_title(f"{panels} = {key}" if panels != "eps_255" else f"ε = {radius_label(key)}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"robust {_METRICS.get(metric, metric)} (%)")
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncols=len(names), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def iteration_curves(frame: pd.DataFrame, title: str = "") -> Figure:
    """Acc and mIoU (%) against the number of iterations (log axis), one line per attack (``name``)."""
    fig, axes = plt.subplots(1, len(_METRICS), figsize=(9.0, 3.4))
    for ax, (metric, metric_label) in zip(axes, _METRICS.items(), strict=True):
        curves = frame.pivot_table(index="n_iter", columns="name", values=metric, sort=False).sort_index()
        for name in curves:
            style = {"color": "black", "linewidth": 2.2} if name == "worst case" else {"linewidth": 1.2}
            label = "SEA (worst case)" if name == "worst case" else name
            ax.plot(curves.index, curves[name], marker="o", label=label, **style)
        ax.set_xscale("log")
        ax.set_xticks(curves.index, [str(n) for n in curves.index])
        ax.minorticks_off()
        ax.set_xlabel("iterations per attack")
        ax.set_ylabel(f"robust {metric_label} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(frameon=False, fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
