"""The radius-reduction stage table (robseg_lib.book.radius_stages): its points, and its last stage is SEA's run."""

from __future__ import annotations

import pytest
import torch

from robseg_lib import models
from robseg_lib.book import radius_stages
from robseg_lib.engines import evaluate, zoo
from robseg_lib.params import load_params


@pytest.fixture
def smoke_zoo(monkeypatch, tmp_path):
    """The smoke profile with an untrained, seeded tiny UPerNet served by the zoo (nothing is trained)."""
    monkeypatch.setenv("ROBSEG_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("ROBSEG_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = models.create_model("tiny_upernet_convnext", num_classes=11).eval()
    monkeypatch.setattr(zoo, "get_model", lambda params, name, device="cpu", progress=False: model)
    return load_params("smoke")


def test_stage_table_lists_every_point_and_ends_with_seas_per_loss_result(smoke_zoo):
    ps = smoke_zoo
    table = radius_stages.stage_table(ps, "upernet_pirat5_e", eps=8, n_iter=10, n_images=8, batch_size=4)
    points = ["start", "stage 1", "projected 2", "stage 2", "projected 3", "stage 3", radius_stages.CONSTANT]
    assert table.groupby("loss")["point"].apply(list).to_dict() == {loss: points for loss in ps.eval.losses}
    radii = table.drop_duplicates("point").set_index("point")["radius"]
    assert radii.to_dict() == {
        "start": 16, "stage 1": 16, "projected 2": 12, "stage 2": 12, "projected 3": 8, "stage 3": 8,
        radius_stages.CONSTANT: 8,
    }  # fmt: skip
    assert table[["acc", "miou"]].stack().between(0, 100).all()
    evaluation = evaluate.Evaluation.of(ps, "upernet_pirat5_e", eps=8, n_iter=10, n_images=8, batch_size=4)
    sea = evaluate.run(evaluation).sea
    last = table[table["point"] == "stage 3"].set_index("loss")
    for loss, (acc, miou) in sea.per_attack.items():
        assert last.loc[loss, "acc"] == pytest.approx(100 * acc)
        assert last.loc[loss, "miou"] == pytest.approx(100 * miou)


def test_stage_plot_draws_one_line_per_loss_and_budget():
    import pandas as pd

    rows = [
        {"loss": loss, "point": point, "radius": 8, "acc": 50.0 + i, "miou": 20.0 + i, "n_iter": n}
        for n in (10, 40)
        for loss in ("mce", "js")
        for i, point in enumerate(["start", "stage 1", "stage 2", radius_stages.CONSTANT])
    ]
    fig = radius_stages.stage_plot(pd.DataFrame(rows), title="t")
    top, bottom = fig.axes
    assert len(top.get_lines()) == 8  # 4 red-ε paths and 4 constant-ε levels
    assert [line.get_ydata()[-1] for line in bottom.get_lines()[:1]] == [22.0]
