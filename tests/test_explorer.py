"""The perturbation explorer (``robseg_lib.book.explorer``): frames stay in their ε-balls, panels stay small, and the
widget's controls are front-end links (``jslink``), so it works without a kernel.

A one-layer convolutional net on two smoke-profile images keeps every test within seconds; the real-browser
check of the rendered widget is ``tests/test_explorer_browser.py``.
"""

from __future__ import annotations

import dataclasses
import io

import ipywidgets as widgets
import pytest
import torch
from ipywidgets.widgets.widget_link import Link
from PIL import Image
from torch import nn

from robseg_lib import data
from robseg_lib.book import explorer
from robseg_lib.book.explorer import (
    MAX_FRAMES,
    MAX_TILE,
    ExplorerFrames,
    explorer_frames,
    explorer_models,
    explorer_widget,
)
from robseg_lib.metrics import compute_stats
from robseg_lib.params import ModelParams, load_params

NUM_CLASSES = 11
EPS = (0, 2, 8)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Conv2d(3, NUM_CLASSES, 3, padding=1).eval()


class _MustNotRun(nn.Module):
    """A model that fails when called: limits must be checked before any attack runs."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the model was run although the request was invalid")


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    val = data.dataset_from_params(load_params("smoke").data, "val")
    return val.images[:2], val.labels[:2]


@pytest.fixture(scope="module")
def frames(batch: tuple[torch.Tensor, torch.Tensor]) -> ExplorerFrames:
    x, y = batch
    return explorer_frames(_net(), x, y, EPS, attack="mce", n_iter=3, seed=0, num_classes=NUM_CLASSES, title="conv")


def test_frame_grid_covers_every_image_and_radius(frames: ExplorerFrames, batch) -> None:
    assert len(frames) == 2 * len(EPS) and frames.eps == EPS
    for i, row in enumerate(frames.frames):
        assert [(f.image_index, f.eps) for f in row] == [(i, e) for e in EPS]
    assert torch.equal(frames.images, batch[0]) and torch.equal(frames.labels, batch[1])


def test_frames_lie_in_their_eps_ball(frames: ExplorerFrames) -> None:
    for row in frames.frames:
        x = frames.images[row[0].image_index]
        for f in row:
            delta = (f.x_adv - x).abs().max().item()
            assert delta <= f.eps / 255 + 1e-6, f"eps {f.eps}/255: |delta|_inf = {delta * 255:.3f}/255"
            assert f.x_adv.min() >= 0 and f.x_adv.max() <= 1
            if f.eps == 0:
                assert torch.equal(f.x_adv, x)
    assert any((f.x_adv != frames.images[f.image_index]).any() for row in frames.frames for f in row[1:])


def test_predictions_and_accuracies_match_a_recomputation(frames: ExplorerFrames) -> None:
    net = _net()
    for row in frames.frames:
        for f in row:
            with torch.no_grad():
                pred = net(f.x_adv[None]).argmax(1)
            label = frames.labels[f.image_index][None]
            assert torch.equal(pred[0], f.prediction)
            expected = compute_stats(pred, label, NUM_CLASSES).image_accuracy().item()
            assert f.accuracy == pytest.approx(expected)


def test_stronger_radii_never_help_on_the_same_attack_budget(frames: ExplorerFrames) -> None:
    """Sanity of the frames, not a theorem: the clean frame is the best here (a random conv net is fragile)."""
    for row in frames.frames:
        assert all(f.accuracy <= row[0].accuracy + 1e-9 for f in row)


@pytest.mark.parametrize("tile_size", [64, MAX_TILE])
def test_panels_are_small_pngs(batch, tile_size: int) -> None:
    x, y = batch
    result = explorer_frames(_net(), x[:1], y[:1], (0, 4), n_iter=1, tile_size=tile_size)
    for f in result.frames[0]:
        image = Image.open(io.BytesIO(f.png))
        assert image.format == "PNG"
        tiles, gaps = 4 * tile_size, 3 * explorer._GAP
        assert image.size == (tiles + gaps, explorer._HEADER + tile_size)  # square inputs: square tiles
        assert len(f.png) < 4 * tile_size * tile_size  # well below raw RGB: a page holds up to MAX_FRAMES of them


def test_tiles_wider_than_the_limit_are_refused(batch) -> None:
    x, y = batch
    with pytest.raises(ValueError, match=f"tile_size must lie in \\[16, {MAX_TILE}\\]"):
        explorer_frames(_MustNotRun(), x, y, EPS, tile_size=MAX_TILE + 1)


def test_too_many_frames_are_refused_before_any_attack(batch) -> None:
    x, y = batch
    many = torch.cat([x] * 4), torch.cat([y] * 4)  # 8 images x 3 radii = 24 frames
    with pytest.raises(ValueError, match=f"24 frames, more than MAX_FRAMES = {MAX_FRAMES}"):
        explorer_frames(_MustNotRun(), *many, EPS)


@pytest.mark.parametrize("eps", [(), (0, 4, 4), (4, 2), (0, 2.0), (0, 65), (-1, 2)])
def test_invalid_radii_are_refused(batch, eps) -> None:
    x, y = batch
    with pytest.raises(ValueError, match="eps_list"):
        explorer_frames(_MustNotRun(), x, y, eps)


def test_mismatched_shapes_are_refused(batch) -> None:
    x, y = batch
    with pytest.raises(ValueError, match="labels"):
        explorer_frames(_MustNotRun(), x, y[:1], EPS)


def _links(widget: explorer.PerturbationExplorer) -> set[tuple[int, str, int, str]]:
    return {(id(link.source[0]), link.source[1], id(link.target[0]), link.target[1]) for link in widget.links}


def test_widget_controls_are_jslinked_to_the_stacks(frames: ExplorerFrames) -> None:
    other = dataclasses.replace(frames, title="second model")
    widget = explorer_widget([frames, other], image_names=["a", "b"], class_names=[f"c{k}" for k in range(11)])
    assert isinstance(widget, widgets.VBox)
    assert all(type(link) is Link for link in widget.links)  # jslink: front-end, both directions
    slider, picker = widget.slider, widget.picker
    assert isinstance(slider, widgets.SelectionSlider) and slider.options == ("0/255", "2/255", "8/255")
    assert isinstance(picker, widgets.ToggleButtons) and picker.options == ("a", "b")
    expected = set()
    for outer in widget.stacks:
        assert isinstance(outer, widgets.Stack) and outer.selected_index == 0
        expected.add((id(picker), "index", id(outer), "selected_index"))
        for inner in outer.children:
            assert isinstance(inner, widgets.Stack) and inner.selected_index == 0
            expected.add((id(slider), "index", id(inner), "selected_index"))
    assert _links(widget) == expected
    assert len(widget.stacks) == 2


def test_widget_pages_show_the_frames_in_slider_order(frames: ExplorerFrames) -> None:
    widget = explorer_widget(frames)
    for outer in widget.stacks:
        for row, inner in zip(frames.frames, outer.children, strict=True):
            for f, page in zip(row, inner.children, strict=True):
                caption, image = page.children
                assert isinstance(image, widgets.Image) and image.value == f.png and image.format == "png"
                assert f"ε = {f.eps}/255" in caption.value and f"{100 * f.accuracy:.1f}%" in caption.value


def test_a_single_image_needs_no_picker(frames: ExplorerFrames) -> None:
    single = dataclasses.replace(frames, frames=frames.frames[:1])
    widget = explorer_widget(single)
    assert widget.picker is None
    assert _links(widget) == {(id(widget.slider), "index", id(widget.stacks[0].children[0]), "selected_index")}


def test_widget_refuses_too_many_frames(frames: ExplorerFrames) -> None:
    with pytest.raises(ValueError, match=f"24 frames, more than MAX_FRAMES = {MAX_FRAMES}"):
        explorer_widget([frames] * 4)


def test_widget_refuses_models_with_different_radii(frames: ExplorerFrames) -> None:
    other = dataclasses.replace(frames, eps=(0, 2, 4))
    with pytest.raises(ValueError, match="same radii"):
        explorer_widget([frames, other])
    with pytest.raises(ValueError, match="image names"):
        explorer_widget(frames, image_names=["only one"])


def test_models_default_to_a_clean_and_a_robust_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from robseg_lib.engines import zoo

    ps = load_params("smoke")
    zoo_models = {
        "at_s": ModelParams(arch="tiny_segmenter_vit", regime="at"),
        "pirat_s": ModelParams(arch="tiny_segmenter_vit", regime="pir-at"),
        "clean_u": ModelParams(arch="tiny_upernet_convnext", regime="clean"),
        "at_u": ModelParams(arch="tiny_upernet_convnext", regime="at"),
        "pirat_u": ModelParams(arch="tiny_upernet_convnext", regime="pir-at"),
    }
    ps = dataclasses.replace(ps, models=zoo_models, eval=dataclasses.replace(ps.eval, model=None))
    monkeypatch.setattr(zoo, "get_model", lambda params, name, **kwargs: name)
    # PIR-AT of the clean model's architecture
    assert explorer_models(ps) == [("clean_u (clean training)", "clean_u"), ("pirat_u (PIR-AT)", "pirat_u")]
    assert explorer_models(ps, "at_u") == [("at_u (AT)", "at_u")]
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        explorer_models(ps, "nope")
    # the profile's eval.model wins when it is robust; a clean eval.model does not replace the robust one
    with_eval = dataclasses.replace(ps, eval=ps.eval_with(model="at_s"))
    assert [m for _, m in explorer_models(with_eval)] == ["clean_u", "at_s"]
    clean_eval = dataclasses.replace(ps, eval=ps.eval_with(model="clean_u"))
    assert [m for _, m in explorer_models(clean_eval)] == ["clean_u", "pirat_u"]
    # without PIR-AT models: AT; without clean models: the robust one alone
    no_pirat = dataclasses.replace(ps, models={k: v for k, v in zoo_models.items() if not k.startswith("pirat")})
    assert [m for _, m in explorer_models(no_pirat)] == ["clean_u", "at_u"]
    robust_only = dataclasses.replace(ps, models={"pirat_s": zoo_models["pirat_s"]})
    assert [m for _, m in explorer_models(robust_only)] == ["pirat_s"]


def test_a_profile_without_models_gets_an_untrained_stand_in() -> None:
    smoke = load_params("smoke")
    ps = dataclasses.replace(smoke, models={}, eval=dataclasses.replace(smoke.eval, model=None))
    state = torch.random.get_rng_state()
    [(title, model)] = explorer_models(ps)
    assert "untrained" in title and "defines no models" in title
    assert not model.training
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG must not be reseeded"
