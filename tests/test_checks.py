"""Evaluation sanity checks: each flag fires on its failure mode, and only there."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from robseg_lib.checks import CHECKS, CheckFlag, EvalCheckError, EvalCheckWarning, run_checks

K = 4
BOOK_PAGE = Path(__file__).resolve().parent.parent / "book" / "sanity_checks.md"


class TinySeg(nn.Module):
    """Conv net with BatchNorm; ``head`` post-processes the logits."""

    def __init__(self, head: nn.Module | None = None) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, K, 1))
        self.head = head or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Noisy(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + torch.randn_like(z)


class Detach(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()


class Round(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 4) / 4


class SqrtMask(nn.Module):
    """Finite outputs, NaN input gradient (0 * d sqrt(x)/dx at x = 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0 * torch.sqrt(x)


class Downsample(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z[..., ::2, ::2]


def make_model(head: nn.Module | None = None, pre: nn.Module | None = None) -> nn.Module:
    torch.manual_seed(0)
    model = TinySeg(head)
    return (nn.Sequential(pre, model) if pre is not None else model).eval()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 8, 8, generator=gen)
    y = torch.randint(0, K, (2, 8, 8), generator=gen)
    y[0, 0, :3] = 255
    return x, y


def codes(flags: list[CheckFlag]) -> set[str]:
    return {f.code for f in flags}


def quiet_checks(*args, **kwargs) -> list[CheckFlag]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvalCheckWarning)
        return run_checks(*args, **kwargs)


def test_clean_setting_raises_no_flag(batch):
    x, y = batch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run_checks(make_model(), x, y, 8 / 255, K) == []


@pytest.mark.parametrize(("eps", "code"), [(8.0, "eps-scale"), (1.5, "eps-scale"), (0.0, "eps-zero")])
def test_eps_flags(batch, eps, code):
    x, y = batch
    assert codes(quiet_checks(make_model(), x, y, eps, K)) == {code}


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf")])
def test_invalid_eps_is_an_error(batch, eps):
    x, y = batch
    with pytest.raises(ValueError, match="eps"):
        run_checks(make_model(), x, y, eps, K)


def test_input_range(batch):
    x, y = batch
    assert codes(quiet_checks(make_model(), x * 255, y, 8 / 255, K)) == {"input-range"}
    x_nan = x.clone()
    x_nan[0, 0, 0, 0] = float("nan")
    assert "input-range" in codes(quiet_checks(make_model(), x_nan, y, 8 / 255, K))


@pytest.mark.parametrize("bad", [-1, K, 254])
def test_label_range(batch, bad):
    x, y = batch
    y = y.clone()
    y[1, 2, 2] = bad
    flags = quiet_checks(make_model(), x, y, 8 / 255, K)
    assert codes(flags) == {"label-range"}
    assert str(bad) in flags[0].message


def test_ignore_index_is_not_a_label_error(batch):
    x, y = batch
    y = torch.where(y == 255, torch.full_like(y, 7), y)
    assert quiet_checks(make_model(), x, y, 8 / 255, K, ignore_index=7) == []
    assert codes(quiet_checks(make_model(), x, y, 8 / 255, K)) == {"label-range"}


def test_float_labels(batch):
    x, y = batch
    assert codes(quiet_checks(make_model(), x, y.float(), 8 / 255, K)) == {"label-range"}


def test_train_mode_flag_and_batchnorm_statistics_restored(batch):
    x, y = batch
    model = make_model().train()
    bn = model.body[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    flags = quiet_checks(model, x, y, 8 / 255, K)
    assert codes(flags) == {"train-mode"}  # BatchNorm with batch statistics is deterministic
    assert all(
        torch.equal(a, b)
        for a, b in zip(before, (bn.running_mean, bn.running_var, bn.num_batches_tracked), strict=True)
    )
    assert model.training


def test_dropout_in_train_mode_flags_randomness(batch):
    x, y = batch
    model = make_model(head=nn.Dropout(0.5))
    model.head.train()
    assert codes(quiet_checks(model, x, y, 8 / 255, K)) == {"train-mode", "randomness"}
    assert "head" in quiet_checks(model, x, y, 8 / 255, K)[0].message


def test_randomness_in_eval_mode_and_rng_restored(batch):
    x, y = batch
    model = make_model(head=Noisy())
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    flags = quiet_checks(model, x, y, 8 / 255, K)
    assert codes(flags) == {"randomness"}
    assert torch.equal(torch.rand(3), expected)  # the checks consumed no global randomness


def test_probabilities(batch):
    x, y = batch
    assert codes(quiet_checks(make_model(head=nn.Softmax(dim=1)), x, y, 8 / 255, K)) == {"probabilities"}
    # log-probabilities are valid logits
    assert quiet_checks(make_model(head=nn.LogSoftmax(dim=1)), x, y, 8 / 255, K) == []


@pytest.mark.parametrize("pre", [Detach(), Round()])
def test_zero_gradient(batch, pre):
    x, y = batch
    assert codes(quiet_checks(make_model(pre=pre), x, y, 8 / 255, K)) == {"zero-gradient"}


def test_zero_gradient_ignores_fully_unlabelled_images(batch):
    x, y = batch
    y = y.clone()
    y[1] = 255
    model = make_model(pre=Round())
    flags = quiet_checks(model, x, y, 8 / 255, K)
    assert "image(s) [0]" in flags[0].message
    y[0] = 255
    assert quiet_checks(model, x, y, 8 / 255, K) == []


def test_nonfinite_outputs_and_gradients(batch):
    x, y = batch
    model = make_model(head=nn.Sequential(nn.Identity()))
    with torch.no_grad():
        model.body[3].bias[0] = float("inf")
    assert codes(quiet_checks(model, x, y, 8 / 255, K)) == {"nonfinite"}
    x0 = x.clone()
    x0[:, :, 0, 0] = 0.0
    flags = quiet_checks(make_model(pre=SqrtMask()), x0, y, 8 / 255, K)
    assert codes(flags) == {"nonfinite"}
    assert "gradient" in flags[0].message


def test_output_shape(batch):
    x, y = batch
    assert codes(quiet_checks(make_model(head=Downsample()), x, y, 8 / 255, K)) == {"output-shape"}
    assert codes(quiet_checks(make_model(), x, y, 8 / 255, K + 1)) == {"output-shape"}


def test_bad_shapes_are_errors(batch):
    x, y = batch
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        run_checks(make_model(), x, y[:, :4], 8 / 255, K)


def test_warnings_carry_code_and_reason(batch):
    x, y = batch
    with pytest.warns(EvalCheckWarning, match=r"\[eps-scale\].*Why it matters: Radii are fractions"):
        run_checks(make_model(), x, y, 8.0, K)


def test_strict_raises_with_all_flags(batch):
    x, y = batch
    with pytest.raises(EvalCheckError) as info:
        run_checks(make_model(head=nn.Softmax(dim=1)), x * 2, y, 4.0, K, strict=True)
    assert codes(info.value.flags) == {"probabilities", "input-range", "eps-scale"}
    assert "[probabilities]" in str(info.value)


def test_flags_have_their_documented_reason(batch):
    x, y = batch
    for flag in quiet_checks(make_model(head=nn.Softmax(dim=1)), x * 2, y, 4.0, K):
        assert flag.reason == CHECKS[flag.code]


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_book_page_documents_every_flag():
    page = BOOK_PAGE.read_text()
    headings = re.findall(r"^### `([a-z-]+)`$", page, flags=re.M)
    assert headings == list(CHECKS), "one book entry per flag, in the order of CHECKS"
    flat = _normalise(page)
    for code, reason in CHECKS.items():
        assert _normalise(reason) in flat, f"reason of {code!r} differs from its book entry"
