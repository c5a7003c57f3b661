"""Parameter sets: typed loading and one clear message per mistake."""

import pytest

from robseg_lib.params import ParamError, list_profiles, load_params, notebook_setup


def _write(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return tmp_path / name


DATA = "data:\n  name: digitscenes\n  num_classes: 11\n  image_size: 32\n"
EVAL = "eval:\n  eps: 4\n"


def test_shipped_profiles_load():
    assert {"tiny", "smoke"} <= set(list_profiles())
    for profile in ("tiny", "smoke"):
        p = load_params(profile)
        assert p.profile == profile
        assert p.data.name == "digitscenes"
        assert 0 < p.eval.eps <= 64


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ParamError, match="unknown profile 'tinny'.*valid: .*tiny.*did you mean 'tiny'"):
        load_params("tinny")


def test_unknown_key_names_file_and_key(tmp_path):
    _write(tmp_path, "data.yaml", DATA + "  image_sise: 4\n")
    _write(tmp_path, "eval.yaml", EVAL)
    with pytest.raises(ParamError) as err:
        load_params(tmp_path)
    msg = str(err.value)
    assert "data.yaml" in msg
    assert "'image_sise'" in msg
    assert "did you mean 'image_size'" in msg


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("  eps: four\n", "eval.eps: expected an integer, got 'four'"),
        ("  eps: 4.5\n", "eval.eps: expected an integer"),
        ("  eps: 100\n", r"eval.eps: 100 is out of range \(0, 64\]"),
        ("  eps: 0\n", r"out of range \(0, 64\]"),
        ("  class_weights: balanced\n", "is not one of"),
        ("  losses: mce\n", "expected a list"),
    ],
)
def test_wrong_type_or_range_is_explained(tmp_path, line, expected):
    _write(tmp_path, "data.yaml", DATA)
    _write(tmp_path, "eval.yaml", "eval:\n" + (line if "eps" in line else "  eps: 4\n" + line))
    with pytest.raises(ParamError, match=expected) as err:
        load_params(tmp_path)
    assert "eval.yaml" in str(err.value)


def test_unknown_section_and_duplicate_section(tmp_path):
    _write(tmp_path, "data.yaml", DATA + "evall:\n  eps: 4\n")
    with pytest.raises(ParamError, match="unknown section 'evall'.*did you mean 'eval'"):
        load_params(tmp_path)
    _write(tmp_path, "data.yaml", DATA)
    _write(tmp_path, "eval.yaml", EVAL)
    _write(tmp_path, "more.yaml", EVAL)
    with pytest.raises(ParamError, match="section 'eval' is already defined"):
        load_params(tmp_path)


def test_missing_required_key(tmp_path):
    _write(tmp_path, "data.yaml", "data:\n  name: digitscenes\n  image_size: 32\n")
    _write(tmp_path, "eval.yaml", EVAL)
    with pytest.raises(ParamError, match="missing required key 'num_classes'"):
        load_params(tmp_path)


def test_models_and_train_overrides(tmp_path):
    _write(tmp_path, "data.yaml", DATA)
    _write(tmp_path, "eval.yaml", EVAL)
    _write(tmp_path, "train.yaml", "train:\n  epochs: 3\n  batch_size: 8\n")
    _write(
        tmp_path,
        "models.yaml",
        "models:\n  a:\n    arch: tiny_upernet_convnext\n    regime: pir-at\n    train:\n      attack_steps: 5\n",
    )
    p = load_params(tmp_path)
    assert p.model("a").init == "robust"
    t = p.train_for("a")
    assert (t.epochs, t.attack_steps) == (3, 5)
    with pytest.raises(ParamError, match="unknown model 'b'.*valid: a"):
        p.model("b")


def test_model_train_override_typo_is_caught(tmp_path):
    _write(tmp_path, "data.yaml", DATA)
    _write(tmp_path, "eval.yaml", EVAL)
    _write(tmp_path, "models.yaml", "models:\n  a:\n    arch: x\n    train:\n      atack_steps: 5\n")
    with pytest.raises(ParamError, match=r"models\.a\.train: unknown key 'atack_steps'"):
        load_params(tmp_path)


def test_single_file_with_include(tmp_path):
    _write(tmp_path, "_common.yaml", DATA + EVAL)
    f = _write(tmp_path, "m.yaml", "include: [_common.yaml]\nmodels:\n  m:\n    arch: upernet_convnext_t_cvst\n")
    p = load_params(f)
    assert list(p.models) == ["m"]
    assert p.data.image_size == 32
    # Loading the folder reads each included file once.
    _write(tmp_path, "n.yaml", "include: [_common.yaml]\nmodels:\n  n:\n    arch: segmenter_vit_s\n")
    assert sorted(load_params(tmp_path).models) == ["m", "n"]


def test_notebook_setup_rejects_typos_and_bad_values():
    import typing

    annotations = {"profile": str, "model": typing.Optional[str], "eps": typing.Optional[int]}  # noqa: UP045
    ns = {"__annotations__": annotations, "np": typing, "In": [], "profile": "smoke", "model": None, "eps": 4}
    setup = notebook_setup(ns)
    smoke = load_params("smoke")
    assert setup.params == smoke and setup.model_name == smoke.default_model()
    assert setup.eval == smoke.eval_with(eps=4)
    assert notebook_setup(ns, eval_overrides=()).eval == smoke.eval
    with pytest.raises(ParamError, match="unknown notebook parameter.*'epss'.*did you mean 'eps'"):
        notebook_setup({**ns, "epss": 8})
    with pytest.raises(ParamError, match=r"parameter eps: 70 is out of range \(0, 64\]"):
        notebook_setup({**ns, "eps": 70})
    with pytest.raises(ParamError, match=r"parameter eps: expected int \| None, got '4' \(str\)"):
        notebook_setup({**ns, "eps": "4"})
    with pytest.raises(ParamError, match="unknown model 'nosuch'"):
        notebook_setup({**ns, "model": "nosuch"})
    with pytest.raises(ParamError, match="without a specification"):
        notebook_setup({**ns, "__annotations__": {**annotations, "colour": str}, "colour": "red"})


def test_default_model_resolution(tmp_path):
    _write(tmp_path, "data.yaml", DATA)
    _write(tmp_path, "eval.yaml", EVAL)
    models = "models:\n  a:\n    arch: x\n  b:\n    arch: x\n"
    _write(tmp_path, "models.yaml", models)
    with pytest.raises(ParamError, match="name a model: .* 2 models \\(a, b\\), 0 of them released"):
        load_params(tmp_path).default_model()
    _write(tmp_path, "models.yaml", models + "    released: abc\n")
    assert load_params(tmp_path).default_model() == "b"
    _write(tmp_path, "eval.yaml", EVAL + "  model: a\n")
    assert load_params(tmp_path).default_model() == "a"
    _write(tmp_path, "eval.yaml", EVAL + "  model: c\n")
    with pytest.raises(ParamError, match="unknown model 'c'"):
        load_params(tmp_path).default_model()


def test_eval_overrides_are_validated():
    p = load_params("smoke")
    assert p.eval_with(eps=8, n_iter=None).eps == 8
    assert p.eval_with(n_iter=None).n_iter == p.eval.n_iter
    with pytest.raises(ParamError, match=r"eps: 0 is out of range"):
        p.eval_with(eps=0)


def test_cuda_without_cuda_suggests_cpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ParamError, match="CUDA is not available.*use device='cpu'"):
        notebook_setup({"__annotations__": {"device": str}, "device": "cuda"})


PRETRAIN = "pretrain:\n  epochs: 4\n  lr: 2.0e-3\n"


def test_pretrain_per_arch_overrides_apply_to_their_arch_only(tmp_path):
    _write(tmp_path, "data.yaml", DATA)
    _write(tmp_path, "eval.yaml", EVAL)
    _write(tmp_path, "train.yaml", PRETRAIN + "  per_arch:\n    tiny_segmenter_vit: {lr: 1.0e-3, epochs: 8}\n")
    pretrain = load_params(tmp_path).pretrain
    vit, convnext = pretrain.for_arch("tiny_segmenter_vit"), pretrain.for_arch("tiny_upernet_convnext")
    assert (vit.lr, vit.epochs, convnext.lr, convnext.epochs) == (1e-3, 8, 2e-3, 4)
    assert vit.per_arch == {} and convnext.per_arch == {}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("{lrr: 1.0e-3}", r"pretrain\.per_arch\.vit: unknown key 'lrr'"),
        ("{epochs: 0}", r"pretrain\.per_arch\.vit\.epochs"),
        ("{per_arch: {}}", r"pretrain\.per_arch\.vit: expected a mapping of pretrain keys"),
    ],
)
def test_pretrain_per_arch_mistakes_are_caught_at_load(tmp_path, override, expected):
    _write(tmp_path, "data.yaml", DATA)
    _write(tmp_path, "eval.yaml", EVAL)
    _write(tmp_path, "train.yaml", PRETRAIN + f"  per_arch:\n    vit: {override}\n")
    with pytest.raises(ParamError, match=expected):
        load_params(tmp_path)


def test_missing_profiles_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBSEG_PARAMS", str(tmp_path / "absent"))
    with pytest.raises(ParamError, match=r"profiles folder .*absent does not exist.*ROBSEG_PARAMS"):
        load_params("tiny")
    monkeypatch.setenv("ROBSEG_PARAMS", str(tmp_path))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.yaml").write_text("data: {name: digitscenes}\n")
    with pytest.raises(ParamError, match="unknown profile 'tiny'; valid: mine"):
        load_params("tiny")
