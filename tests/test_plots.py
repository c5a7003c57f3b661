"""Book figures (robseg_lib.book.plots)."""

from __future__ import annotations

import torch

from robseg_lib.book import plots


def test_crop_grid_titles_each_crop_and_hides_empty_cells():
    images = torch.rand(7, 3, 8, 8)
    fig = plots.crop_grid(images, [f"class {i}" for i in range(7)], columns=4)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 8 and len(shown) == 7
    assert [ax.get_title() for ax in shown] == [f"class {i}" for i in range(7)]
    assert torch.allclose(torch.from_numpy(shown[2].images[0].get_array().data).permute(2, 0, 1).float(), images[2])
