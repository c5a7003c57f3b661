"""Training cost of AT and PIR-AT (robseg_lib.book.training_curves): logs, Table 3, speed-up table and figures.

Synthetic training logs are written where the zoo keeps them, so no model is trained except in the last test.
Every synthetic model runs 10 iterations per epoch; its cost after e epochs is 10 * e * (steps + 1) passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from robseg_lib.book import training_curves as tc
from robseg_lib.engines import zoo
from robseg_lib.params import load_params

UPERNET = ["upernet_at2_e", "upernet_at5_e", "upernet_pirat2_e", "upernet_pirat5_e", "upernet_at2_6e", "upernet_at5_6e"]
# name: (attack steps, epochs) in params/smoke/models.yaml (budget E = 1 epoch, the long budget 2 epochs)
RECIPES = {
    "upernet_at2_e": (2, 1),
    "upernet_at5_e": (5, 1),
    "upernet_pirat2_e": (2, 1),
    "upernet_pirat5_e": (5, 1),
    "upernet_at2_6e": (2, 2),
    "upernet_at5_6e": (5, 2),
}
ITERS = 10


def _robust(name: str, epoch: int) -> float:
    """The synthetic log's val_robust_miou (a fraction), distinct per model and epoch."""
    return 0.01 * (UPERNET.index(name) + 1 if name in UPERNET else 0) + 0.1 * epoch


def _sea(name: str, eps: int) -> tuple[float, float]:
    """Synthetic SEA worst-case (acc, miou) in %, distinct per model and radius."""
    i = UPERNET.index(name)
    return 80.0 - 10 * eps + i, 40.0 - 5 * eps + i / 2


@pytest.fixture(scope="module")
def smoke():
    return load_params("smoke")


@pytest.fixture
def logged(smoke, tmp_path: Path) -> Path:
    """A cache root holding synthetic training logs of the smoke profile's UPerNet AT / PIR-AT and clean models."""
    for name, (steps, epochs) in {**RECIPES, "upernet_clean": (0, 1)}.items():
        rows = [
            {
                "epoch": e,
                "iteration": ITERS * e,
                "wall_time_s": 0.5 * ITERS * e * (steps + 1),
                "cost_passes": ITERS * e * (steps + 1),
                "train_loss": 1.0 / e,
                "val_miou": 0.5,
                "val_acc": 0.8,
                "val_robust_miou": _robust(name, e),
                "lr": 1e-3,
            }
            for e in range(1, epochs + 1)
        ]
        folder = zoo.model_dir(smoke, name, tmp_path)
        folder.mkdir(parents=True)
        pd.DataFrame(rows).to_csv(folder / "train_log.csv", index=False)
    return tmp_path


@pytest.fixture
def sweep() -> pd.DataFrame:
    """A table shaped like experiments.sweep's: clean, one attack and the worst case at radii 2 and 4."""
    rows = []
    for name in UPERNET:
        rows.append({"model": name, "eps_255": 0, "radius_rank": 0, "loss": "clean", "name": "clean"})
        rows[-1] |= {"acc": 90.0, "miou": 70.0}
        for rank, eps in enumerate((2, 4), start=1):
            acc, miou = _sea(name, eps)
            common = {"model": name, "eps_255": eps, "radius_rank": rank}
            rows.append(common | {"loss": "mce", "name": "MCE", "acc": acc + 5, "miou": miou + 5})
            rows.append(common | {"loss": "worst case", "name": "worst case", "acc": acc, "miou": miou})
    return pd.DataFrame(rows).assign(attack="sea", seed=0, n_iter=4, n_images=8)


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


@pytest.mark.parametrize(("epochs", "base", "label"), [(2, 2, "E"), (12, 2, "6E"), (2, 1, "2E"), (3, 2, "1.5E")])
def test_budget_label(epochs, base, label):
    assert tc.budget_label(epochs, base) == label


def test_adversarial_models_in_yaml_order(smoke):
    assert tc.adversarial_models(smoke) == UPERNET
    assert tc.adversarial_models(smoke, arch="segmenter") == ["segmenter_at5_e", "segmenter_pirat5_e"]


def test_recipes(smoke):
    table = tc.recipes(smoke, ["upernet_pirat5_e", "upernet_at2_6e", "upernet_clean"])
    assert list(table.index) == ["upernet_pirat5_e", "upernet_at2_6e", "upernet_clean"]
    assert table.loc["upernet_pirat5_e", ["training", "init", "steps", "epochs", "budget"]].tolist() == [
        "PIR-AT",
        "robust",
        5,
        1,
        "E",
    ]
    assert table.loc["upernet_at2_6e", ["training", "init", "steps", "epochs", "budget"]].tolist() == [
        "AT",
        "clean",
        2,
        2,
        "2E",
    ]
    assert table.loc["upernet_clean", "training"] == "clean" and table.loc["upernet_clean", "steps"] == 0


def test_training_logs_join_recipes_and_convert_units(smoke, logged):
    logs = tc.training_logs(smoke, UPERNET, root=logged)
    assert len(logs) == sum(epochs for _, epochs in RECIPES.values())
    assert list(dict.fromkeys(logs["model"])) == UPERNET
    row = logs[(logs["model"] == "upernet_at5_6e") & (logs["epoch"] == 2)].iloc[0]
    assert row["cost_passes"] == 120 and row["cost_clean_epochs"] == pytest.approx(12.0)  # (5 + 1) x 2 epochs
    assert row["val_robust_miou"] == pytest.approx(100 * _robust("upernet_at5_6e", 2))
    assert row["val_miou"] == pytest.approx(50.0) and row["val_acc"] == pytest.approx(80.0)
    assert (row["training"], row["init"], row["steps"], row["budget"]) == ("AT", "clean", 5, "2E")
    with pytest.raises(FileNotFoundError, match="no training log"):
        tc.training_logs(smoke, ["segmenter_clean"], root=logged)


def test_final_costs_take_the_last_epoch(smoke, logged):
    final = tc.final_costs(tc.training_logs(smoke, UPERNET, root=logged))
    assert list(final.index) == UPERNET
    for name, (steps, epochs) in RECIPES.items():
        assert final.loc[name, "epoch"] == epochs
        assert final.loc[name, "cost_passes"] == ITERS * epochs * (steps + 1)
        assert final.loc[name, "val_robust_miou"] == pytest.approx(100 * _robust(name, epochs))


def test_cost_summary_joins_sea_and_the_papers_table3(smoke, logged, sweep):
    summary = tc.cost_summary(smoke, sweep, tc.training_logs(smoke, UPERNET, root=logged), eps=4)
    assert list(summary.index) == UPERNET
    for name in UPERNET:
        assert tuple(summary.loc[name, ["acc", "miou"]]) == pytest.approx(_sea(name, 4))
    # The paper's Table 3 (VOC UPerNet ConvNeXt-T): 2-step AT 300 epochs, 4/255: Acc 86.5, mIoU 59.6.
    at2_long = summary.loc["upernet_at2_6e"]
    assert (at2_long["paper_epochs"], at2_long["paper_cost_clean_epochs"]) == (300, 900)
    assert (at2_long["paper_acc"], at2_long["paper_miou"]) == (86.5, 59.6)
    # 5-step PIR-AT 50 epochs at 4/255: Acc 88.6, mIoU 64.9.
    pir5 = summary.loc["upernet_pirat5_e"]
    assert (pir5["paper_epochs"], pir5["paper_cost_clean_epochs"], pir5["paper_acc"], pir5["paper_miou"]) == (
        50,
        300,
        88.6,
        64.9,
    )
    at_two = tc.cost_summary(smoke, sweep, tc.training_logs(smoke, UPERNET, root=logged), eps=2)
    assert at_two["paper_acc"].isna().all() and at_two["paper_epochs"].notna().all()  # no paper radius 2/255
    with pytest.raises(ValueError, match="no SEA worst case at 8/255"):
        tc.cost_summary(smoke, sweep, tc.training_logs(smoke, UPERNET, root=logged), eps=8)


def test_table3_rows_and_columns(smoke, logged, sweep):
    table = tc.table3(smoke, sweep, tc.training_logs(smoke, UPERNET, root=logged))
    assert list(table.index.names) == [
        "model",
        "training",
        "init",
        "steps",
        "epochs",
        "budget",
        "cost (passes)",
        "wall time (s)",
    ]
    labels = {row[0]: row for row in table.index}
    assert labels["upernet_at5_6e"] == ("upernet_at5_6e", "AT", "clean", 5, 2, "2E", 120, 60.0)
    assert labels["upernet_pirat2_e"] == ("upernet_pirat2_e", "PIR-AT", "robust", 2, 1, "E", 30, 15.0)
    by_model = table.droplevel(list(range(1, table.index.nlevels)))
    assert by_model.loc["upernet_pirat2_e", ("ours", "4/255", "mIoU")] == pytest.approx(_sea("upernet_pirat2_e", 4)[1])
    assert by_model.loc["upernet_pirat2_e", ("ours", "clean", "Acc")] == 90.0
    # Table 3: 2-step PIR-AT 50 epochs, 8/255: Acc 50.2, mIoU 21.0; 2-step AT 50 epochs, clean: Acc 93.4.
    assert by_model.loc["upernet_pirat2_e", ("paper", "8/255", "Acc")] == 50.2
    assert by_model.loc["upernet_pirat2_e", ("paper", "8/255", "mIoU")] == 21.0
    assert by_model.loc["upernet_at2_e", ("paper", "clean", "Acc")] == 93.4
    radii = {
        who: [eps for w, eps, metric in table.columns if w == who and metric == "Acc"] for who in ("ours", "paper")
    }
    assert radii == {"ours": ["clean", "2/255", "4/255"], "paper": ["clean", "4/255", "8/255", "12/255"]}


def test_a_model_without_counterpart_in_table3_has_no_paper_numbers(smoke, logged, sweep):
    names = ["upernet_clean", "upernet_pirat5_e"]
    clean = {"model": "upernet_clean", "radius_rank": 1, "eps_255": 4, "loss": "worst case", "acc": 3.0, "miou": 2.0}
    frame = pd.concat([sweep, pd.DataFrame([clean])], ignore_index=True)
    logs = tc.training_logs(smoke, names, root=logged)
    summary = tc.cost_summary(smoke, frame, logs, eps=4)
    assert summary.loc["upernet_clean", ["acc", "miou", "cost_passes"]].tolist() == [3.0, 2.0, ITERS]
    assert summary.loc["upernet_clean", ["paper_epochs", "paper_acc", "paper_miou"]].isna().all()
    assert summary.loc["upernet_pirat5_e", "paper_miou"] == 64.9
    alone = tc.cost_summary(smoke, frame, tc.training_logs(smoke, ["upernet_clean"], root=logged), eps=4)
    assert alone[["paper_epochs", "paper_cost_clean_epochs", "paper_acc"]].isna().all(axis=None)
    table = tc.table3(smoke, frame, logs).droplevel(list(range(1, 8)))
    assert table.loc["upernet_clean", "paper"].isna().all() and table.loc["upernet_pirat5_e", "paper"].notna().all()
    assert tc.speedup_table(summary, eps=4).empty
    fig = tc.cost_curves(logs)
    colours = {line.get_label().split("(")[-1].rstrip(")"): to_hex(line.get_color()) for line in fig.axes[0].lines}
    assert colours["upernet_clean"] != colours["upernet_pirat5_e"]


def test_speedup_table_pairs_pirat_e_with_the_longest_at(smoke, logged, sweep):
    summary = tc.cost_summary(smoke, sweep, tc.training_logs(smoke, UPERNET, root=logged), eps=4)
    table = tc.speedup_table(summary, eps=4)
    assert list(table.index) == [
        (2, "PIR-AT E", "upernet_pirat2_e"),
        (2, "AT 2E", "upernet_at2_6e"),
        (5, "PIR-AT E", "upernet_pirat5_e"),
        (5, "AT 2E", "upernet_at5_6e"),
    ]
    ours, paper = "ours", "paper"
    pir2 = table.loc[(2, "PIR-AT E", "upernet_pirat2_e")]
    assert pir2[(ours, "cost (passes)")] == 30  # 10 iterations x (2 + 1), against 60 for two epochs of AT
    assert pir2[(ours, "relative cost")] == 0.5 and pir2[(ours, "relative wall time")] == 0.5
    assert pir2[(ours, "SEA mIoU, 4/255")] == pytest.approx(_sea("upernet_pirat2_e", 4)[1])
    assert pir2[(paper, "epochs")] == 50 and pir2[(paper, "relative cost")] == 0.17  # 150 / 900
    assert (pir2[(paper, "SEA Acc, 4/255")], pir2[(paper, "SEA mIoU, 4/255")]) == (86.7, 60.8)
    at5 = table.loc[(5, "AT 2E", "upernet_at5_6e")]
    assert at5[(ours, "relative cost")] == 1.0 and at5[(paper, "epochs")] == 300
    assert (at5[(paper, "SEA Acc, 4/255")], at5[(paper, "SEA mIoU, 4/255")]) == (88.6, 64.8)
    short_only = tc.speedup_table(summary.drop(index=["upernet_at2_6e", "upernet_at5_6e"]), eps=4)
    assert short_only.empty and short_only.columns.equals(table.columns)


def test_cost_curves_one_line_per_model_styled_by_recipe(smoke, logged):
    logs = tc.training_logs(smoke, UPERNET, root=logged)
    fig = tc.cost_curves(logs, title="curves")
    axes = fig.axes
    assert len(axes) == 4 and fig.get_suptitle() == "curves"
    assert ["passes" in ax.get_xlabel() for ax in axes] == [True, False, True, False]
    assert ["(s)" in ax.get_xlabel() for ax in axes] == [False, True, False, True]
    assert all(ax.get_ylabel().endswith("(%)") for ax in axes)
    for ax in axes:
        assert len(ax.get_lines()) == len(UPERNET)
    lines = {line.get_label().split("(")[-1].rstrip(")"): line for line in axes[0].get_lines()}
    assert set(lines) == set(UPERNET)
    colour = {name: to_hex(line.get_color()) for name, line in lines.items()}
    assert colour["upernet_at2_e"] == colour["upernet_at5_6e"] != colour["upernet_pirat2_e"]
    assert colour["upernet_pirat2_e"] == colour["upernet_pirat5_e"]
    style = {name: line.get_linestyle() for name, line in lines.items()}
    assert style["upernet_at2_e"] == style["upernet_pirat2_e"] == style["upernet_at2_6e"] != style["upernet_at5_e"]
    assert lines["upernet_at5_e"].get_marker() != lines["upernet_at5_6e"].get_marker()
    at5_long = lines["upernet_at5_6e"]
    assert list(at5_long.get_xdata()) == [60, 120]  # passes after epochs 1 and 2
    assert list(at5_long.get_ydata()) == pytest.approx([100 * _robust("upernet_at5_6e", e) for e in (1, 2)])
    wall = {line.get_label().split("(")[-1].rstrip(")"): line for line in axes[1].get_lines()}
    assert list(wall["upernet_at5_6e"].get_xdata()) == [30.0, 60.0]
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == len(UPERNET)


def _markers(ax) -> set[tuple[float, float]]:
    """The single points (marker, no line) drawn on an axis."""
    return {
        (float(line.get_xdata()[0]), float(line.get_ydata()[0]))
        for line in ax.get_lines()
        if line.get_linestyle() == "None"
    }


def test_robustness_vs_cost_ours_and_the_papers(smoke, logged, sweep):
    summary = tc.cost_summary(smoke, sweep, tc.training_logs(smoke, UPERNET, root=logged), eps=4)
    fig = tc.robustness_vs_cost(summary, eps=4, title="cost")
    (acc_ours, acc_paper), (miou_ours, miou_paper) = [fig.axes[:2], fig.axes[2:]]
    assert len(fig.axes) == 4 and fig.get_suptitle() == "cost"
    expected = {(ITERS * e * (s + 1), _sea(name, 4)[1]) for name, (s, e) in RECIPES.items()}
    assert _markers(miou_ours) == expected
    assert _markers(acc_ours) == {(ITERS * e * (s + 1), _sea(name, 4)[0]) for name, (s, e) in RECIPES.items()}
    # Table 3 at 4/255, cost (steps + 1) x epochs: PIR-AT 2 steps 50 ep. (150, 60.8), AT 5 steps 300 ep. (1800, 64.8)
    assert {(150.0, 60.8), (1800.0, 64.8)} <= _markers(miou_paper)
    assert len(_markers(acc_paper)) == len(UPERNET)
    assert "passes" in miou_ours.get_xlabel() and "epochs" in miou_paper.get_xlabel()
    assert all("4/255" in ax.get_ylabel() and ax.get_title() for ax in fig.axes)
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels == [
        "AT, 2 steps",
        "AT, 5 steps",
        "PIR-AT, 2 steps",
        "PIR-AT, 5 steps",
        "budget E (paper: 50 epochs)",
        "budget 2E (paper: 300 epochs)",
    ]
    off_paper = tc.cost_summary(smoke, sweep, tc.training_logs(smoke, UPERNET, root=logged), eps=2)
    fig = tc.robustness_vs_cost(off_paper, eps=2)
    assert not _markers(fig.axes[1]) and "no paper numbers at 2/255" in [t.get_text() for t in fig.axes[1].texts]


@pytest.mark.slow
def test_training_logs_of_a_model_trained_by_the_zoo(smoke, tmp_path, one_thread):
    name = "upernet_pirat2_e"
    fast = {"robust_val_iter": 1, "val_images": 2}
    params = dataclasses.replace(
        smoke, models={name: dataclasses.replace(smoke.models[name], train={**smoke.models[name].train, **fast})}
    )
    zoo.get_model(params, name, progress=False, root=tmp_path)
    logs = tc.training_logs(params, [name], root=tmp_path)
    steps = params.train_for(name).attack_steps
    assert list(logs["epoch"]) == list(range(1, params.train_for(name).epochs + 1))
    assert (logs["cost_passes"] == logs["iteration"] * (steps + 1)).all()
    assert logs["cost_clean_epochs"].tolist() == [(steps + 1) * e for e in logs["epoch"]]
    assert logs["val_robust_miou"].between(0, 100).all() and (logs["wall_time_s"] > 0).all()
    assert (logs["training"] == "PIR-AT").all() and (logs["budget"] == "E").all()


def test_zoo_wall_times_read_the_logs_and_mark_untrained_models(smoke, logged):
    (zoo.model_dir(smoke, "upernet_at2_e", logged) / "model.safetensors.json").write_text("{}")  # "fully written"
    times = tc.zoo_wall_times(smoke, root=logged)
    assert list(times.index) == list(smoke.models)
    steps, epochs = RECIPES["upernet_at2_e"]
    row = times.loc["upernet_at2_e"]
    assert row["cost_passes"] == ITERS * epochs * (steps + 1)
    assert row["s per cost unit"] == pytest.approx(0.5)
    assert (times.drop(index="upernet_at2_e")["wall time (s)"] == "not trained").all()
