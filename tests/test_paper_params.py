"""Paper-scale parameter sets (params/voc, params/ade20k) against the paper's Table 4 and the release.

Naming convention of the paper-scale models (checked here): ``<arch>_<regime>_<k>s_<E>ep`` with ``<arch>`` the
registered architecture, ``<regime>`` one of ``pirat``, ``at``, ``clean``, ``k`` the training attack steps and
``E`` the epochs; clean models are ``<arch>_clean_<E>ep``. A released checkpoint is identified by its share id
(released_checkpoints.csv) in the description of exactly one model.
"""

from __future__ import annotations

import csv
import functools
import re
from importlib import resources
from pathlib import Path

import pytest

from robseg_lib.params import ParamSet
from robseg_lib.params import load_params as _load_params
from robseg_lib.paths import params_root

PROFILES = ("voc", "ade20k")
DATASET_OF_PROFILE = {"voc": "PascalVOC", "ade20k": "ADE20K"}
PROFILE_OF_DATASET = {v: k for k, v in DATASET_OF_PROFILE.items()}
# (paper architecture, paper backbone) -> registered architecture
ARCH = {
    ("UPerNet", "ConvNeXt-T"): "upernet_convnext_t_cvst",
    ("UPerNet", "ConvNeXt-S"): "upernet_convnext_s_cvst",
    ("Segmenter", "ViT-S"): "segmenter_vit_s",
}
# backbone strings of the release -> registered architecture
ARCH_OF_BACKBONE = {
    "ConvNeXt-T_CVST": "upernet_convnext_t_cvst",
    "ConvNeXt-S_CVST": "upernet_convnext_s_cvst",
    "vit_small_patch16_224": "segmenter_vit_s",
}
REGIME = {"AT": "at", "PIR-AT": "pir-at", "clean": "clean"}
NAME_RE = re.compile(r"^(?P<arch>[a-z0-9_]+?)_(?P<regime>pirat|at|clean)(?:_(?P<steps>\d+)s)?_(?P<epochs>\d+)ep$")
NAME_REGIME = {"pirat": "pir-at", "at": "at", "clean": "clean"}


@functools.cache
def load_params(source: str | Path) -> ParamSet:
    """Loading is pure (frozen dataclasses); cache it, the tests load the same files many times."""
    return _load_params(source)


@functools.cache
def _csv(name: str) -> list[dict[str, str]]:
    with resources.files("robseg_lib").joinpath("paper_data", f"{name}.csv").open() as f:
        return list(csv.DictReader(f))


def _files(profile: str) -> list[Path]:
    return sorted(p for p in (params_root() / profile).glob("*.yaml") if not p.name.startswith("_"))


def _all_models() -> list[tuple[str, str]]:
    return [(profile, name) for profile in PROFILES for name in sorted(load_params(profile).models)]


def _table4() -> dict[str, dict[str, str]]:
    """Table 4 as {parameter: {column: value}}."""
    return {row["parameter"]: row for row in _csv("table4_training_config")}


def _column(profile: str, arch: str) -> str:
    family = "segmenter" if arch.startswith("segmenter") else "upernet"
    return f"{'voc' if profile == 'voc' else 'ade'}_{family}"


def _pair(text: str) -> tuple[float, float]:
    short, long = text.split("/")
    return float(short), float(long)


# ------------------------------------------------------------------------------------------------ loading


def test_expected_files_exist():
    assert [p.name for p in _files("voc")] == ["upernet_convnext_s_cvst.yaml", "upernet_convnext_t_cvst.yaml"]
    assert [p.name for p in _files("ade20k")] == [
        "segmenter_vit_s.yaml",
        "upernet_convnext_s_cvst.yaml",
        "upernet_convnext_t_cvst.yaml",
    ]


@pytest.mark.parametrize(
    "path", [p for profile in PROFILES for p in _files(profile)], ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_every_file_loads_alone(path):
    params = load_params(path)
    profile = path.parent.name
    assert params.profile == profile
    assert params.data.name == profile
    assert params.train is not None
    assert params.models, f"{path} defines no model"
    for name, model in params.models.items():
        assert name.startswith(model.arch + "_"), name
        assert model.arch == path.stem, f"{path}: model {name} has arch {model.arch}, the file is for {path.stem}"
        params.train_for(name)  # the merged training parameters validate


@pytest.mark.parametrize("profile", PROFILES)
def test_folder_loads_as_a_whole(profile):
    whole = load_params(profile)
    separately = [set(load_params(p).models) for p in _files(profile)]
    assert sum(len(s) for s in separately) == len(whole.models)
    assert set().union(*separately) == set(whole.models)
    # the shared sections are the same objects whichever way the profile is loaded
    for path in _files(profile):
        alone = load_params(path)
        assert (alone.data, alone.eval, alone.train) == (whole.data, whole.eval, whole.train)


@pytest.mark.parametrize("profile", PROFILES)
def test_common_file_holds_no_models(profile):
    import yaml

    raw = yaml.safe_load((params_root() / profile / "_common.yaml").read_text())
    assert set(raw) == {"data", "eval", "train"}


# ------------------------------------------------------------------------------------------------ data, eval


@pytest.mark.parametrize("profile", PROFILES)
def test_data_section_matches_table4(profile):
    t4 = _table4()
    col = _column(profile, "upernet")
    data = load_params(profile).data
    assert data.num_classes == int(t4["num_classes"][col])
    assert data.base_size == int(t4["base_size"][col])
    crop_h, crop_w = (int(v) for v in t4["crop_size"][col].split("x"))
    assert data.image_size == crop_h == crop_w
    assert data.root is None  # given on the command line
    assert data.ignore_index == 255


@pytest.mark.parametrize(("profile", "batch"), [("voc", 24), ("ade20k", 16)])
def test_eval_section_is_the_paper_protocol(profile, batch):
    ev = load_params(profile).eval
    release_batch = {
        "voc": "configs/pascalvoc_convnext.yaml",
        "ade20k": "configs/ade20k_convnext.yaml",
    }[profile]
    released = {r["config_file"]: r for r in _csv("released_configs")}
    assert ev.batch_size == batch == int(released[release_batch]["eval_batch_size"])
    assert (ev.eps, ev.n_iter, ev.n_images, ev.seed, ev.device) == (8, 300, None, 0, "cuda")
    assert ev.losses == ("mce-bal", "mce", "js")
    assert ev.class_weights == "released"
    assert ev.radii == (4, 8, 12)


# ------------------------------------------------------------------------------------------------ Table 4


@pytest.mark.parametrize(("profile", "name"), _all_models(), ids=lambda v: v)
def test_training_matches_table4(profile, name):
    params = load_params(profile)
    model = params.model(name)
    tp = params.train_for(name)
    t4 = _table4()
    col = _column(profile, model.arch)
    assert tp.optimizer == t4["optimizer"][col].lower()
    assert tp.lr == float(t4["base_lr"][col])
    assert tp.weight_decay == float(t4["weight_decay"][col])
    assert tp.power == float(t4["schedule_power"][col])
    momentum = [float(v) for v in t4["momentum_or_betas"][col].split(",")]
    if tp.optimizer == "sgd":
        assert [tp.momentum] == momentum
    else:
        assert list(tp.betas) == momentum
    aux = t4["aux_loss_weight"][col]
    assert tp.aux_weight == (0.0 if aux == "none" else float(aux))
    per_gpu, gpus = (int(v) for v in t4["batch_size"][col].split("x"))
    assert tp.batch_size == per_gpu * gpus == 128
    # epochs: the short or the long schedule, with the warm-up paired with it
    epochs = _pair(t4["epochs"][col])
    warmups = _pair(t4["warmup_epochs"][col])
    assert tp.epochs in epochs, f"{name}: {tp.epochs} epochs is neither schedule of Table 4 ({epochs})"
    assert tp.warmup_epochs == warmups[epochs.index(tp.epochs)]
    # training attack (App. B.2): PGD-CE, eps 4/255, step 0.01, 2 or 5 steps; none for clean training
    assert tp.attack_eps == int(t4["adv_train_eps"][col].split("/")[0])
    assert tp.attack_step_size == float(t4["adv_train_step_size"][col])
    if model.regime == "clean":
        assert tp.attack_steps == 0
    else:
        assert tp.attack_steps in {int(v) for v in t4["adv_train_steps"][col].split(" or ")}
    assert tp.amp is False
    assert tp.augment is True


@pytest.mark.parametrize(("profile", "name"), _all_models(), ids=lambda v: v)
def test_stochastic_depth(profile, name):
    params = load_params(profile)
    model = params.model(name)
    text = _table4()["stochastic_depth"]
    if model.arch.startswith("upernet"):
        tiny, small = re.findall(r"([\d.]+) \(([TS])\)", text[_column(profile, model.arch)])
        expected = {"upernet_convnext_t_cvst": tiny, "upernet_convnext_s_cvst": small}[model.arch]
        assert expected[1] == ("T" if model.arch == "upernet_convnext_t_cvst" else "S")
        want = float(expected[0])
    else:  # not stated in Table 4; its note gives the Segmenter code's value
        want = float(re.search(r"Segmenter code uses ([\d.]+)", text["note"]).group(1))
    assert model.train.get("drop_path") == params.train_for(name).drop_path == want


# ------------------------------------------------------------------------------------------------ the zoo


@pytest.mark.parametrize(("profile", "name"), _all_models(), ids=lambda v: v)
def test_name_follows_the_convention(profile, name):
    params = load_params(profile)
    model = params.model(name)
    tp = params.train_for(name)
    m = NAME_RE.match(name)
    assert m, f"{name} does not follow <arch>_<regime>_<k>s_<E>ep"
    assert m["arch"] == model.arch
    assert NAME_REGIME[m["regime"]] == model.regime
    assert int(m["epochs"]) == tp.epochs
    assert (m["steps"] is None) == (model.regime == "clean")
    assert int(m["steps"] or 0) == tp.attack_steps
    # every entry states its schedule and attack explicitly instead of inheriting it
    assert {"epochs", "warmup_epochs", "attack_steps", "drop_path"} <= set(model.train)
    assert model.backbone_init is None  # the regime decides: robust for PIR-AT, clean otherwise
    assert model.init == ("robust" if model.regime == "pir-at" else "clean")
    assert model.backbone_checkpoint is None and model.checkpoint is None  # no local path is shipped
    assert model.description


def _paper_models() -> set[tuple[str, str, str, int, int]]:
    """(profile, arch, regime, steps, epochs) of every UPerNet/Segmenter model of Tables 2 and 3."""
    out = set()
    for table in ("table2_robust_models", "table3_at_vs_pirat"):
        for row in _csv(table):
            if row["architecture"] == "PSPNet":  # out of scope: no model, no checkpoint
                continue
            arch = ARCH[(row["architecture"], row["backbone"])]
            out.add(
                (
                    PROFILE_OF_DATASET[row["dataset"]],
                    arch,
                    REGIME[row["training"]],
                    int(row["train_attack_steps"]),
                    int(row["epochs"]),
                )
            )
    return out


def _key(profile: str, name: str) -> tuple[str, str, str, int, int]:
    params = load_params(profile)
    tp = params.train_for(name)
    model = params.model(name)
    return profile, model.arch, model.regime, tp.attack_steps, tp.epochs


def test_every_model_of_tables_2_and_3_has_exactly_one_entry():
    keys = [_key(profile, name) for profile, name in _all_models()]
    for wanted in sorted(_paper_models()):
        assert keys.count(wanted) == 1, f"{wanted}: {keys.count(wanted)} entries"


def test_table1_clean_model_exists():
    clean = {
        (PROFILE_OF_DATASET[r["dataset"]], ARCH[(r["architecture"], r["backbone"])])
        for r in _csv("table1_attacks")
        if r["training"] == "clean"
    }
    keys = [_key(profile, name) for profile, name in _all_models()]
    for profile, arch in clean:
        assert sum(1 for k in keys if k[:3] == (profile, arch, "clean")) == 1


def test_every_adversarially_trained_entry_is_a_paper_or_released_model():
    released = {
        (PROFILE_OF_DATASET[r["dataset"]], ARCH_OF_BACKBONE[r["backbone_string"]], *_parse_training(r["training"]))
        for r in _csv("released_checkpoints")
    }
    allowed = _paper_models() | released
    for profile, name in _all_models():
        key = _key(profile, name)
        assert key[2] == "clean" or key in allowed, f"{profile}/{name} is in no table and not released"


def _parse_training(text: str) -> tuple[str, int, int]:
    m = re.fullmatch(r"(PIR-AT|AT) (\d+) steps (\d+) epochs", text)
    assert m, text
    return REGIME[m[1]], int(m[2]), int(m[3])


@pytest.mark.parametrize("row", _csv("released_checkpoints"), ids=lambda r: r["share_id"])
def test_released_checkpoint_is_exactly_one_entry(row):
    hits = [
        (profile, name)
        for profile, name in _all_models()
        if row["share_id"] in load_params(profile).model(name).description
    ]
    assert len(hits) == 1, f"share {row['share_id']}: entries {hits}"
    profile, name = hits[0]
    assert profile == PROFILE_OF_DATASET[row["dataset"]]
    assert load_params(profile).data.num_classes == int(row["num_classes"])
    assert row["third_party_file_name"] in load_params(profile).model(name).description
    assert _key(profile, name)[1:] == (ARCH_OF_BACKBONE[row["backbone_string"]], *_parse_training(row["training"]))


def test_only_released_models_claim_a_released_checkpoint():
    claims = [(p, n) for p, n in _all_models() if "released checkpoint" in load_params(p).model(n).description]
    assert len(claims) == len(_csv("released_checkpoints"))


def test_architectures_are_registered():
    try:
        from robseg_lib import models
    except ImportError as err:  # pragma: no cover - only while robseg_lib.models is being written
        pytest.skip(f"robseg_lib.models cannot be imported yet: {err}")
    registered = set(models.list_models())
    for profile, name in _all_models():
        assert load_params(profile).model(name).arch in registered, f"{profile}/{name}"


# ------------------------------------------------------------------------------------------------ release vs Table 4

# released config -> (profile, model file, the model trained with that config's schedule)
RELEASED_CONFIG_MODEL = {
    "configs/pascalvoc_convnext.yaml": ("voc", "upernet_convnext_t_cvst", "upernet_convnext_t_cvst_pirat_5s_50ep"),
    "configs/ade20k_convnext.yaml": ("ade20k", "upernet_convnext_t_cvst", "upernet_convnext_t_cvst_pirat_5s_128ep"),
    "configs/ade20k_segmenter.yaml": ("ade20k", "segmenter_vit_s", "segmenter_vit_s_pirat_5s_32ep"),
}
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?")


def _release_lines(profile: str, stem: str) -> list[tuple[str, str]]:
    """(whole line, comment) of the common and the model file's lines whose comment mentions the release."""
    out = []
    for file in (params_root() / profile / "_common.yaml", params_root() / profile / f"{stem}.yaml"):
        for line in file.read_text().splitlines():
            if "#" in line:
                comment = line.split("#", 1)[1]
                if "release" in comment.lower():
                    out.append((line.lower(), comment))
    return out


# what a line commenting on a released value must mention (in its key or its comment)
KEYWORD = {
    "lr": r"\blr\b",
    "weight_decay": r"weight.decay",
    "power": r"power",
    "n_iters": r"attack.steps",
    "train_batch_size_per_gpu": r"per gpu",
    "eval_batch_size": r"batch_size",
    "warmup_epochs": r"warmup",
}


@pytest.mark.parametrize("config", sorted(RELEASED_CONFIG_MODEL))
def test_differences_from_the_released_yaml_are_commented(config):
    row = {r["config_file"]: r for r in _csv("released_configs")}[config]
    profile, stem, name = RELEASED_CONFIG_MODEL[config]
    params = load_params(profile)
    tp = params.train_for(name)
    assert tp.epochs == int(row["epochs"])
    lines = _release_lines(profile, stem)
    ours = {
        "lr": tp.lr,
        "weight_decay": tp.weight_decay,
        "power": tp.power,
        "n_iters": tp.attack_steps,
        "train_batch_size_per_gpu": tp.batch_size // 8,
        "eval_batch_size": params.eval.batch_size,
        "warmup_epochs": tp.warmup_epochs,
    }
    differences = []
    for key, value in ours.items():
        released = float(row[key])
        if key == "warmup_epochs" and row["scheduler"] == "polylr":  # polylr has no warm-up
            assert any("no warmup" in comment for _, comment in lines), f"{config}: polylr's missing warm-up"
            differences.append(key)
            continue
        if released != value:
            differences.append(key)
            assert any(
                re.search(KEYWORD[key], line) and released in {float(n) for n in NUMBER.findall(comment)}
                for line, comment in lines
            ), f"{config}: released {key} {row[key]} (ours {value}) is not stated in a comment on {key}"
    assert row["optimizer"].lower() == tp.optimizer
    # every difference the CSV lists is among those found
    listed = row["paper_table4_differences"]
    for key, word in [("lr", "lr"), ("weight_decay", "wd"), ("n_iters", "attack steps"), ("warmup_epochs", "warmup")]:
        if re.search(rf"\b{word}\b", listed):
            assert key in differences, f"{config}: the CSV lists a {word} difference that the parameters do not show"
    assert any(config.split("/")[1] in comment for _, comment in lines)


def test_released_field_names_each_released_checkpoint_once():
    """`released:` marks the model `sea --checkpoint` evaluates when no --model is given."""
    from robseg_lib.book import paper

    released = paper.table("released_checkpoints")
    marked = {}
    for profile in ("voc", "ade20k"):
        for name, model in load_params(profile).models.items():
            if model.released:
                marked[model.released] = (profile, name)
    assert set(marked) == set(released["share_id"])
    for path in sorted(params_root().glob("*/[!_]*.yaml")):
        if path.parent.name in ("voc", "ade20k"):
            ps = load_params(path)
            assert ps.models[ps.default_model()].released is not None
