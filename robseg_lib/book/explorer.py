"""The perturbation explorer of the book: precomputed attack frames behind a kernel-free slider.

:func:`explorer_frames` attacks a few images at a few radii and renders, per image and radius, one small PNG
panel (input, magnified perturbation, colourised prediction, ground truth). :func:`explorer_widget` puts the
panels into ``ipywidgets.Stack`` widgets whose ``selected_index`` is ``jslink``-ed to an ε slider and an
image picker. Links made with ``jslink`` live in the browser, so the explorer works in the static, offline
book (whose saved widget state has no kernel behind it) exactly as in a live notebook. Every frame is stored
base64 in the page, hence the limits on their number (:data:`MAX_FRAMES`) and size (:data:`MAX_TILE`).
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import ipywidgets as widgets
import numpy as np
import torch
from ipywidgets.widgets.widget_link import Link
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from robseg_lib import models
from robseg_lib.attacks import apgd
from robseg_lib.book.plots import class_colours, colourise
from robseg_lib.engines import zoo
from robseg_lib.metrics import compute_stats
from robseg_lib.params import ParamSet

__all__ = [
    "MAX_FRAMES",
    "MAX_TILE",
    "ExplorerFrame",
    "ExplorerFrames",
    "PerturbationExplorer",
    "explorer_frames",
    "explorer_models",
    "explorer_widget",
]

MAX_FRAMES = 20
"""Most frames one explorer may hold (all models, images and radii together): each is embedded in the page."""
MAX_TILE = 256
"""Largest tile width in pixels."""

_GAP = 4  # pixels between tiles
_HEADER = 16  # pixels of the caption line above the tiles
_FONT_SIZE = 11
_FALLBACK_ARCH = "tiny_upernet_convnext"  # untrained stand-in when a profile defines no models
_REGIMES = {"clean": "clean training", "at": "AT", "pir-at": "PIR-AT"}


@dataclass(frozen=True)
class ExplorerFrame:
    """One image attacked at one radius.

    Attributes:
        image_index: Position of the image in the inputs of :func:`explorer_frames`.
        eps: Radius in /255 (0: the clean image).
        x_adv: (3, H, W) the attacked image (the clean one at ``eps == 0``), on the CPU.
        prediction: (H, W) int64 the model's prediction at ``x_adv``.
        accuracy: Fraction of labelled pixels predicted correctly.
        png: The rendered panel.
    """

    image_index: int
    eps: int
    x_adv: torch.Tensor
    prediction: torch.Tensor
    accuracy: float
    png: bytes


@dataclass(frozen=True)
class ExplorerFrames:
    """Frames of one model: ``frames[i][j]`` is image ``i`` at radius ``eps[j]``.

    Attributes:
        title: Shown above the model's panels (usually the model's name).
        eps: Radii in /255, increasing.
        images: (N, 3, H, W) the clean images, on the CPU.
        labels: (N, H, W) their labels.
        attack: The APGD loss that produced the frames.
        frames: N tuples of ``len(eps)`` frames.
    """

    title: str
    eps: tuple[int, ...]
    images: torch.Tensor
    labels: torch.Tensor
    attack: str
    frames: tuple[tuple[ExplorerFrame, ...], ...]

    def __len__(self) -> int:
        return sum(len(row) for row in self.frames)


def _check_frame_count(count: int, what: str) -> None:
    if count > MAX_FRAMES:
        raise ValueError(
            f"{what} make {count} frames, more than MAX_FRAMES = {MAX_FRAMES}: every frame is embedded in the book "
            "page. Use fewer images, radii or models."
        )


def _check_eps(eps_list: Sequence[int]) -> tuple[int, ...]:
    eps = tuple(eps_list)
    if not eps:
        raise ValueError("eps_list is empty")
    if any(isinstance(e, bool) or not isinstance(e, int) or not 0 <= e <= 64 for e in eps):
        raise ValueError(f"eps_list must hold integer radii in /255 within [0, 64] (e.g. [0, 2, 4, 8]), got {eps}")
    if any(b <= a for a, b in pairwise(eps)):
        raise ValueError(f"eps_list must be strictly increasing, got {eps}")
    return eps


def _tile_shape(height: int, width: int, tile_size: int) -> tuple[int, int]:
    """(height, width) of a tile ``tile_size`` pixels wide with the image's aspect ratio."""
    return max(1, round(height * tile_size / width)), tile_size


def _to_tile(rgb: np.ndarray, shape: tuple[int, int], nearest: bool) -> Image.Image:
    """An (H, W, 3) array in [0, 1] as a PIL image of ``shape``; label maps keep hard edges (``nearest``)."""
    image = Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    resample = Image.Resampling.NEAREST if nearest or shape[1] >= image.width else Image.Resampling.BILINEAR
    return image.resize((shape[1], shape[0]), resample)


def _fitting_font(text: str, width: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The default font at the largest size (at most ``_FONT_SIZE``, at least 6) that fits ``text`` in ``width``.

    Pillow falls back to its fixed-size bitmap font where FreeType is missing.
    """
    for size in range(_FONT_SIZE, 6, -1):
        font = ImageFont.load_default(size)
        if font.getlength(text) <= width:
            return font
    return ImageFont.load_default(6)


def _panel(tiles: Sequence[tuple[str, Image.Image]]) -> bytes:
    """Tiles side by side under one-line captions, as PNG bytes."""
    height, width = tiles[0][1].height, tiles[0][1].width
    panel = Image.new("RGB", (len(tiles) * width + (len(tiles) - 1) * _GAP, _HEADER + height), "white")
    draw = ImageDraw.Draw(panel)
    for k, (caption, tile) in enumerate(tiles):
        left = k * (width + _GAP)
        draw.text((left + 1, 1), caption, fill="black", font=_fitting_font(caption, width - 2))
        panel.paste(tile, (left, _HEADER))
    buffer = io.BytesIO()
    panel.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _render(
    x: torch.Tensor,
    x_adv: torch.Tensor,
    prediction: torch.Tensor,
    label: torch.Tensor,
    eps: int,
    accuracy: float,
    num_classes: int,
    ignore_index: int,
    tile_size: int,
) -> bytes:
    shape = _tile_shape(x.shape[-2], x.shape[-1], tile_size)
    image = x_adv.permute(1, 2, 0).numpy()
    if eps:  # delta / (2 eps) + 1/2 maps [-eps, eps] to the full range: a magnification of 255 / (2 eps)
        delta = ((x_adv - x) * (255.0 / (2 * eps)) + 0.5).permute(1, 2, 0).numpy()
        delta_caption = f"perturbation x{255 / (2 * eps):.0f}"
    else:
        delta, delta_caption = np.full_like(image, 0.5), "no perturbation"
    predicted, truth = (colourise(m, num_classes, ignore_index) for m in (prediction, label))
    tiles = [
        (f"input, eps {eps}/255", _to_tile(image, shape, nearest=False)),
        (delta_caption, _to_tile(delta, shape, nearest=True)),
        (f"prediction, acc {100 * accuracy:.1f}%", _to_tile(predicted, shape, nearest=True)),
        ("ground truth", _to_tile(truth, shape, nearest=True)),
    ]
    return _panel(tiles)


def explorer_frames(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps_list: Sequence[int],
    attack: str = "mce",
    n_iter: int = 100,
    seed: int = 0,
    num_classes: int | None = None,
    ignore_index: int = 255,
    *,
    title: str = "",
    tile_size: int = 128,
) -> ExplorerFrames:
    """Attack ``images`` at every radius of ``eps_list`` and render one PNG panel per image and radius.

    Each radius is a separate APGD run (with SEA's progressive radius reduction) on the given loss, so a frame
    shows what the attack finds within exactly that radius. Radius 0 shows the clean image.

    Args:
        model: Segmentation model, (N, 3, H, W) in [0, 1] -> logits (N, K, H, W); its device is used.
        images: (N, 3, H, W) clean images in [0, 1].
        labels: (N, H, W) labels.
        eps_list: Increasing radii in /255, e.g. ``(0, 2, 4, 8, 12)``.
        attack: APGD loss (``"mce"``, ``"mce-bal"``, ``"ce"``, ...).
        n_iter: APGD iterations per radius.
        seed: Seed of the attack's random start.
        num_classes: Number of classes K; default: the model's output channels.
        ignore_index: Label of unlabelled pixels (white in the label maps).
        title: Shown above this model's panels by :func:`explorer_widget`.
        tile_size: Width of each of the four tiles in pixels (at most :data:`MAX_TILE`).

    Returns:
        The frames, on the CPU.

    Raises:
        ValueError: More than :data:`MAX_FRAMES` frames, a tile wider than :data:`MAX_TILE`, or invalid radii
            or shapes.
    """
    eps = _check_eps(eps_list)
    if images.dim() != 4 or images.shape[1] != 3 or labels.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"need images (N, 3, H, W) and labels (N, H, W), got {tuple(images.shape)}, {tuple(labels.shape)}"
        )
    _check_frame_count(images.shape[0] * len(eps), f"{images.shape[0]} image(s) x {len(eps)} radii")
    if not 16 <= tile_size <= MAX_TILE:
        raise ValueError(f"tile_size must lie in [16, {MAX_TILE}] pixels, got {tile_size}")
    device = next(model.parameters()).device
    x, y = images.to(device, torch.float32), labels.to(device, torch.int64)
    rows: list[list[ExplorerFrame]] = [[] for _ in range(len(x))]
    was_training = model.training
    model.eval()
    try:
        for e in eps:
            x_adv = (
                apgd(model, x, y, e / 255, loss=attack, n_iter=n_iter, ignore_index=ignore_index, seed=seed) if e else x
            )
            with torch.no_grad():
                logits = model(x_adv)
            k = num_classes if num_classes is not None else logits.shape[1]
            prediction = logits.argmax(1)
            accuracy = compute_stats(prediction, y, k, ignore_index).image_accuracy()
            for i in range(len(x)):
                xa, pred, acc = x_adv[i].cpu(), prediction[i].cpu(), float(accuracy[i])
                png = _render(x[i].cpu(), xa, pred, labels[i].cpu(), e, acc, k, ignore_index, tile_size)
                rows[i].append(ExplorerFrame(i, e, xa, pred, acc, png))
    finally:
        model.train(was_training)
    return ExplorerFrames(title, eps, x.cpu(), y.cpu(), attack, tuple(tuple(row) for row in rows))


def _default_names(params: ParamSet) -> list[str]:
    """The first clean model, and a robust one: ``eval.model`` if robust, else PIR-AT before AT, same arch first."""
    clean = next((n for n, m in params.models.items() if m.regime == "clean"), None)
    arch = params.models[clean].arch if clean is not None else None
    robust = params.eval.model
    if robust is None or params.model(robust).regime == "clean":
        for regime in ("pir-at", "at"):
            candidates = [n for n, m in params.models.items() if m.regime == regime]
            same_arch = [n for n in candidates if params.models[n].arch == arch]
            if candidates:
                robust = (same_arch or candidates)[0]
                break
    return [n for n in dict.fromkeys([clean, robust]) if n is not None]


def explorer_models(params: ParamSet, model: str | None = None, device: str = "cpu") -> list[tuple[str, nn.Module]]:
    """The (title, model) pairs the explorer notebook compares, from the profile's zoo.

    ``model`` given: that model alone. Otherwise the profile's first clean model beside a robust one: the
    profile's ``eval.model`` unless it is a clean model, else the first PIR-AT model (else AT model), preferring
    the clean model's architecture. A profile without models gives an untrained tiny UPerNet (seeded, titled as
    such), so that the notebook still runs.

    Args:
        params: The profile (:func:`robseg_lib.params.load_params`).
        model: A model name of the profile's ``models.yaml``, or ``None``.
        device: Where the models live (missing zoo models are trained there first).
    """
    names = [model] if model is not None else _default_names(params)
    if not names:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            untrained = models.create_model(_FALLBACK_ARCH, num_classes=params.data.num_classes)
        title = f"untrained {_FALLBACK_ARCH} (profile {params.profile!r} defines no models)"
        return [(title, untrained.to(device).eval())]
    pairs = []
    for name in names:
        regime = _REGIMES[params.model(name).regime]
        pairs.append((f"{name} ({regime})", zoo.get_model(params, name, device=device, progress=False)))
    return pairs


class PerturbationExplorer(widgets.VBox):
    """The explorer: an image picker and an ε slider above one stack of frames per model.

    Attributes:
        slider: ``SelectionSlider`` over the radii; its ``index`` drives every inner stack.
        picker: ``ToggleButtons`` over the images (``None`` for a single image); its ``index`` drives the
            outer stacks.
        stacks: Per model, the outer ``Stack`` over images whose children are ``Stack`` widgets over radii.
        links: The ``jslink`` links (kept so that they live as long as the widget).
    """

    def __init__(
        self,
        slider: widgets.SelectionSlider,
        picker: widgets.ToggleButtons | None,
        stacks: Sequence[widgets.Stack],
        links: Sequence[Link],
        children: Sequence[widgets.Widget],
    ) -> None:
        super().__init__(children=list(children))
        self.slider, self.picker = slider, picker
        self.stacks, self.links = tuple(stacks), tuple(links)


def _legend(class_names: Sequence[str]) -> widgets.HTML:
    chips = []
    colours = [*class_colours(len(class_names)), (1.0, 1.0, 1.0)]
    for name, colour in zip([*class_names, "unlabelled"], colours, strict=True):
        rgb = ",".join(str(round(255 * float(c))) for c in colour)
        chips.append(
            f'<span style="display:inline-block;margin-right:0.8em;white-space:nowrap">'
            f'<span style="display:inline-block;width:0.9em;height:0.9em;background:rgb({rgb});'
            f'vertical-align:middle;border:1px solid #444"></span> {html.escape(name)}</span>'
        )
    return widgets.HTML('<div style="font-size:small;line-height:1.6">' + "".join(chips) + "</div>")


def explorer_widget(
    frames: ExplorerFrames | Sequence[ExplorerFrames],
    image_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> PerturbationExplorer:
    """The explorer widget over precomputed frames of one or several models (shown one above the other).

    Only front-end links are used (``jslink``), so moving the slider or picking an image works in the static
    book without a kernel. All models must share the radii and the number of images.

    Args:
        frames: Frames of one model, or of several models to compare at the same radii.
        image_names: Labels of the image picker; default ``image 1``, ``image 2``, ...
        class_names: If given, a colour legend of the classes is shown below.

    Raises:
        ValueError: More than :data:`MAX_FRAMES` frames in all, or models whose radii or images differ.
    """
    groups = [frames] if isinstance(frames, ExplorerFrames) else list(frames)
    if not groups:
        raise ValueError("no frames given")
    eps, n_images = groups[0].eps, len(groups[0].frames)
    if any(g.eps != eps or len(g.frames) != n_images for g in groups):
        raise ValueError("all models of one explorer must have the same radii and the same number of images")
    _check_frame_count(sum(len(g) for g in groups), f"{len(groups)} model(s) x {n_images} image(s) x {len(eps)} radii")
    names = list(image_names) if image_names is not None else [f"image {i + 1}" for i in range(n_images)]
    if len(names) != n_images:
        raise ValueError(f"{len(names)} image names for {n_images} images")

    # No widget ``description``: the embedder typesets descriptions with the MathJax 2 API, which fails (a page
    # error) when the book loads MathJax 3. A separate HTML label is not typeset.
    slider = widgets.SelectionSlider(
        options=[f"{e}/255" for e in eps], index=0, layout=widgets.Layout(width="min(100%, 420px)")
    )
    picker = widgets.ToggleButtons(options=names, index=0) if n_images > 1 else None
    children: list[widgets.Widget] = [picker] if picker is not None else []
    children.append(widgets.HBox([widgets.HTML("radius ε&nbsp;"), slider]))
    stacks, links = [], []
    for group in groups:
        per_image = []
        for row in group.frames:
            pages = [
                widgets.VBox(
                    [
                        widgets.HTML(f"ε = {f.eps}/255: pixel accuracy <b>{100 * f.accuracy:.1f}%</b>"),
                        widgets.Image(value=f.png, format="png"),
                    ]
                )
                for f in row
            ]
            inner = widgets.Stack(pages, selected_index=0)
            links.append(widgets.jslink((slider, "index"), (inner, "selected_index")))
            per_image.append(inner)
        outer = widgets.Stack(per_image, selected_index=0)
        if picker is not None:
            links.append(widgets.jslink((picker, "index"), (outer, "selected_index")))
        stacks.append(outer)
        if group.title:
            children.append(
                widgets.HTML(f"<b>{html.escape(group.title)}</b> (attack: APGD on {html.escape(group.attack)})")
            )
        children.append(outer)
    if class_names is not None:
        children.append(_legend(class_names))
    return PerturbationExplorer(slider, picker, stacks, links, children)
