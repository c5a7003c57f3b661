"""The regime criteria (robseg_lib.book.regime): which models they compare, their measurements and the table."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from robseg_lib.book import regime
from robseg_lib.params import load_params


@pytest.fixture(scope="module")
def smoke():
    return load_params("smoke")


def test_families_find_the_clean_and_robust_models_of_each_architecture(smoke):
    fams = {f.label: f for f in regime.families(smoke)}
    assert fams["UPerNet"] == regime.Family(
        "UPerNet", "tiny_upernet_convnext", "upernet_clean_e", "upernet_clean", "upernet_pirat5_e"
    )
    assert fams["Segmenter"].clean_e == "segmenter_clean_e" and fams["Segmenter"].robust == "segmenter_pirat5_e"


def test_a_profile_without_clean_models_at_e_has_only_the_class_balance_criterion(smoke):
    models = {n: m for n, m in smoke.models.items() if n not in ("upernet_clean_e", "segmenter_clean_e")}
    bare = dataclasses.replace(smoke, models=models)
    assert regime.families(bare) == []
    report = regime.report(bare)
    assert report.table.index.get_level_values("criterion").tolist() == ["1. class balance"]
    assert report.backbones.empty and report.figure() is None


def test_background_share_is_measured_on_the_validation_labels(smoke):
    share = regime.background_share(smoke)
    assert 0 < share < 100
    assert regime.background_share(load_params("tiny")) <= regime.BACKGROUND_MAX


def test_paper_values_come_from_the_paper_tables():
    p = regime.paper_values()
    assert (p["clean_twin"], p["robust_clean"], p["robust_4"]) == (80.9, 72.7, 49.5)
    assert (p["e_miou"], p["long_miou"], p["robust_miou"], p["clean_miou"]) == (77.4, 76.3, 75.2, 77.2)
    vit = regime.paper_values("Segmenter")
    assert (vit["clean_twin"], vit["robust_clean"], vit["robust_4"]) == (81.2, 69.2, 44.4)
    assert vit["e_miou"] is vit["robust_miou"] is None  # the paper has no clean Segmenter, no second budget


FAM = regime.Family("UPerNet", "arch", "clean_e", "clean_long", "robust")
BACKBONES = {"arch": {"clean_twin": 90.0, "robust_clean": 85.0, "robust_4": 60.0}}


def test_regime_table_meets_and_misses_each_threshold():
    mious = {"clean_e": 79.0, "clean_long": 80.0, "robust": 70.0}
    table = regime.regime_table(55.0, BACKBONES, mious, [FAM]).reset_index()
    met = dict(zip(table["criterion"] + "|" + table["measure"].str[:20], table["met"], strict=True))
    assert list(met.values()) == ["yes", "yes", "yes", "yes", "yes"]
    assert table["ours"].tolist() == [55.0, round(85 / 90, 3), round(60 / 85, 3), 1.0, 0.875]
    worse = regime.regime_table(
        61.0,
        {"arch": {"clean_twin": 90.0, "robust_clean": 80.0, "robust_4": 50.0}},
        {"clean_e": 77.0, "clean_long": 80.0, "robust": 67.0},
        [FAM],
    )
    assert worse["met"].tolist() == ["no", "no", "no", "no", "no"]


def test_regime_table_sets_the_paper_beside_ours():
    mious = {"clean_e": 79.0, "clean_long": 80.0, "robust": 70.0, "s_e": 20.0, "s_long": 40.0, "s_robust": 10.0}
    seg = regime.Family("Segmenter", "vit", "s_e", "s_long", "s_robust")
    backbones = {**BACKBONES, "vit": BACKBONES["arch"]}
    paper = regime.regime_table(50.0, backbones, mious, [FAM, seg])["paper"].tolist()
    assert pd.isna(paper[0])  # the paper states no background share
    assert paper[1:5] == [round(72.7 / 80.9, 3), round(49.5 / 72.7, 3), round(76.3 - 77.4, 3), round(75.2 / 77.2, 3)]
    assert paper[5:7] == [round(69.2 / 81.2, 3), round(44.4 / 69.2, 3)] and all(pd.isna(v) for v in paper[7:])


@pytest.mark.slow
def test_measurements_on_the_smoke_zoo(smoke, tmp_path, one_thread):
    fam = next(f for f in regime.families(smoke) if f.label == "UPerNet")
    acc = regime.backbone_accuracies(smoke, fam.arch, root=tmp_path)
    assert set(acc) == {"clean_twin", "robust_clean", "robust_4"} and all(0 <= v <= 100 for v in acc.values())
    table = regime.backbone_table(smoke, [fam.arch], root=tmp_path)
    assert table.loc[(fam.arch, "robust"), "clean acc"] == round(acc["robust_clean"], 1)
    assert table.loc[(fam.arch, "clean"), "pre-training (s)"] >= 0
    mious = regime.clean_mious(smoke, [fam.clean_e], root=tmp_path)
    assert set(mious) == {fam.clean_e} and 0 <= mious[fam.clean_e] <= 100


@pytest.mark.slow
def test_report_measures_every_criterion_on_the_smoke_zoo(smoke, tmp_path, one_thread, monkeypatch):
    monkeypatch.setenv("ROBSEG_CACHE", str(tmp_path))
    report = regime.report(smoke)
    assert len(report.table) == 1 + 4 * len(report.families) and report.met <= len(report.table)
    assert set(report.mious) == {n for f in report.families for n in (f.clean_e, f.clean_long, f.robust)}
    fig = report.figure()
    assert len(fig.axes) == len(report.families)


def test_convergence_figure_shows_both_clean_models_per_family():
    logs = pd.DataFrame(
        [
            {"model": m, "epoch": e, "val_miou": 10.0 * e}
            for m, n in (("clean_e", 2), ("clean_long", 6))
            for e in range(1, n + 1)
        ]
    )
    mious = {"clean_e": 25.0, "clean_long": 65.0}
    fig = regime.convergence_figure(logs, [FAM], mious, budget=2)
    (ax,) = fig.axes
    ends = sorted((float(line.get_xdata()[-1]), float(line.get_ydata()[-1])) for line in ax.get_lines()[:4])
    assert ends == [(2.0, 20.0), (2.0, 25.0), (6.0, 60.0), (6.0, 65.0)]
