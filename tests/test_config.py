"""Config system: shipped experiments, strict merging, validation, legacy keys, round trips."""
from __future__ import annotations

import copy
import logging
import pickle
from pathlib import Path

import pytest
import yaml

from lib.config.hiptrack import (
    EXPERIMENTS_DIR,
    LEGACY_KEYS,
    config_from_dict,
    get_default_config,
    load_config,
    resolve_experiment_config,
    validate_config,
)
from lib.config.node import (
    CfgNode,
    ConfigError,
    FrozenConfigError,
    Key,
    LegacyKey,
    describe,
    iter_leaves,
    merge_dict,
    merge_opts,
    merge_yaml,
)

SHIPPED = sorted((EXPERIMENTS_DIR / "hiptrack").glob("*.yaml"))


def write_yaml(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_configs_exist() -> None:
    assert {p.stem for p in SHIPPED} >= {"hiptrack", "hiptrack_got", "hiptrack_tiny"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_config_loads_and_validates(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.is_frozen()
    assert path.read_text().startswith("#"), "each experiment YAML starts with a header comment"
    assert all(isinstance(r, float) for r in cfg.DATA.TRAIN.DATASETS_RATIO)


def test_shipped_config_values() -> None:
    full = load_config(resolve_experiment_config("hiptrack"))
    assert full.MODEL.PRETRAIN_FILE == "DropTrack_k700_800E_alldata.pth.tar"
    assert full.DATA.TRAIN.DATASETS_NAME == ["LASOT", "GOT10K_vottrain", "TRACKINGNET"]  # COCO17 not supported yet
    assert full.TRAIN.BATCH_SIZE == 32 and full.TEST.EPOCH == 99
    assert full.MODEL.BACKBONE.CE_LOC == [3, 6, 9]
    got = load_config(resolve_experiment_config("hiptrack_got"))
    assert got.MODEL.PRETRAIN_FILE == "DropTrack_k700_800E_got10k.pth.tar"
    assert got.DATA.TRAIN.DATASETS_NAME == ["GOT10K_train_full"] and got.TEST.EPOCH == 100
    tiny = load_config(resolve_experiment_config("hiptrack_tiny"))
    assert tiny.MODEL.BACKBONE.TYPE == "vit_tiny_test_ce"
    assert (tiny.DATA.TEMPLATE.SIZE, tiny.DATA.SEARCH.SIZE) == (64, 128)
    assert tiny.TEST.WARMUP_WRITE_FRAMES == [2, 4] and tiny.TRAIN.NUM_WORKER == 0


def test_defaults_validate_and_access() -> None:
    cfg = get_default_config()
    validate_config(cfg)
    assert cfg.MODEL.BACKBONE.TYPE == cfg["MODEL"]["BACKBONE"]["TYPE"] == "vit_base_patch16_224_ce"
    assert "MAX_MEM" in cfg.MODEL and cfg.MODEL.MAX_MEM == 150
    assert isinstance(cfg.TRAIN.LR, float) and cfg.TRAIN.LR == 1e-4
    with pytest.raises(AttributeError, match="MODEL.MAX_MEM"):
        _ = cfg.MODEL.MAX_MEMS
    with pytest.raises(KeyError, match="MODEL.MAX_MEM"):
        _ = cfg["MODEL"]["MAX_MEMS"]


# -- unknown keys -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "dotted", "match"),
    [
        ("MODEL:\n  BACKBONE:\n    CE_LOCC: [3]\n", "MODEL.BACKBONE.CE_LOCC", "MODEL.BACKBONE.CE_LOC"),
        ("MODLE:\n  MAX_MEM: 3\n", "MODLE", "MODEL"),
        ("TRAIN:\n  lr: 0.1\n", "TRAIN.lr", "TRAIN.LR"),
    ],
)
def test_unknown_key_names_file_key_and_close_match(
    tmp_path: Path, text: str, dotted: str, match: str
) -> None:
    path = write_yaml(tmp_path, text, name="typo_exp.yaml")
    with pytest.raises(ValueError) as info:
        merge_yaml(get_default_config(), path)
    message = str(info.value)
    assert "typo_exp.yaml" in message
    assert f"'{dotted}'" in message
    assert f"did you mean '{match}'" in message


# -- types --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "dotted"),
    [
        ("MODEL:\n  MAX_MEM: abc\n", "MODEL.MAX_MEM"),  # string for int
        ("MODEL:\n  MAX_MEM: 1.5\n", "MODEL.MAX_MEM"),  # float for int
        ("MODEL:\n  MAX_MEM: true\n", "MODEL.MAX_MEM"),  # bool for int
        ("TRAIN:\n  AMP: 1\n", "TRAIN.AMP"),  # 1 for bool
        ("TRAIN:\n  AMP: 0\n", "TRAIN.AMP"),  # 0 for bool
        ("TRAIN:\n  LR: true\n", "TRAIN.LR"),  # bool for float
        ("TRAIN:\n  LR: fast\n", "TRAIN.LR"),  # non-numeric string for float
        ("MODEL:\n  PRETRAIN_FILE: 5\n", "MODEL.PRETRAIN_FILE"),  # int for str
        ("MODEL:\n  PRETRAIN_FILE:\n", "MODEL.PRETRAIN_FILE"),  # null for str
        ("MODEL:\n  BACKBONE:\n    CE_LOC: 3\n", "MODEL.BACKBONE.CE_LOC"),  # scalar for list
        ("MODEL:\n  BACKBONE:\n    CE_LOC: [3, a]\n", "MODEL.BACKBONE.CE_LOC"),  # element type
        ("MODEL:\n  BACKBONE:\n    CE_KEEP_RATIO: [x]\n", "MODEL.BACKBONE.CE_KEEP_RATIO"),
        ("DATA:\n  TRAIN:\n    DATASETS_NAME: [1]\n", "DATA.TRAIN.DATASETS_NAME"),
        ("MODEL: 5\n", "MODEL"),  # scalar for a section
        ("MODEL:\n  MAX_MEM: {A: 1}\n", "MODEL.MAX_MEM"),  # mapping for a scalar
        ("DATA:\n  MEAN: {A: 1}\n", "DATA.MEAN"),  # mapping for a list
        ("MODEL:\n  BACKBONE:\n    TYPE: vit_huge\n", "MODEL.BACKBONE.TYPE"),  # not a choice
    ],
)
def test_wrong_type_names_file_and_key(tmp_path: Path, text: str, dotted: str) -> None:
    path = write_yaml(tmp_path, text)
    with pytest.raises(ValueError) as info:
        merge_yaml(get_default_config(), path)
    assert "exp.yaml" in str(info.value)
    assert f"'{dotted}" in str(info.value)


def test_type_error_names_expected_and_got(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "MODEL:\n  MAX_MEM: abc\n")
    with pytest.raises(ConfigError, match=r"expected int, got str 'abc'"):
        merge_yaml(get_default_config(), path)


def test_float_strings_and_ints_become_floats(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        "TRAIN:\n  LR: 1e-4\n  WEIGHT_DECAY: 5\n"
        "MODEL:\n  BACKBONE:\n    CE_KEEP_RATIO: ['7e-1']\n    CE_LOC: [2]\n"
        "DATA:\n  TRAIN:\n    DATASETS_RATIO: [2]\n",
    )
    assert yaml.safe_load(path.read_text())["TRAIN"]["LR"] == "1e-4"  # why the conversion exists
    cfg = merge_yaml(get_default_config(), path)
    assert cfg.TRAIN.LR == 1e-4 and type(cfg.TRAIN.LR) is float
    assert cfg.TRAIN.WEIGHT_DECAY == 5.0 and type(cfg.TRAIN.WEIGHT_DECAY) is float
    assert cfg.MODEL.BACKBONE.CE_KEEP_RATIO == [0.7]
    assert cfg.DATA.TRAIN.DATASETS_RATIO == [2.0] and type(cfg.DATA.TRAIN.DATASETS_RATIO[0]) is float


def test_empty_section_and_empty_file_override_nothing(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert merge_yaml(get_default_config(), write_yaml(tmp_path, "MODEL:\n")) == get_default_config()
    assert "empty" not in caplog.text
    with caplog.at_level(logging.WARNING):
        assert merge_yaml(get_default_config(), write_yaml(tmp_path, "# only a comment\n")) == get_default_config()
    assert "config file" in caplog.text and "exp.yaml' is empty: it overrides no default" in caplog.text


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "MODEL:\n  MAX_MEMS: 3\n  MAX_MEM: abc\nTRAIN:\n  AMP: 1\n  BATCH_SIZ: 2\n  LR: 0.5\n")
    cfg = get_default_config()
    with pytest.raises(ConfigError) as info:
        merge_yaml(cfg, path)
    message = str(info.value)
    assert message.startswith("4 config errors:")
    assert len(info.value.problems) == 4 and all("exp.yaml" in p for p in info.value.problems)
    for fragment in ("'MODEL.MAX_MEMS' (did you mean 'MODEL.MAX_MEM'?)", "key 'MODEL.MAX_MEM': expected int",
                     "key 'TRAIN.AMP': expected bool", "'TRAIN.BATCH_SIZ' (did you mean 'TRAIN.BATCH_SIZE'?)"):
        assert fragment in message
    assert cfg.TRAIN.LR == 1e-4, "a failing file applies nothing, not even its valid keys"


def test_load_config_reports_the_file_and_the_options_together(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "MODEL:\n  MAX_MEMS: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, opts=["TRAIN.LR=abc", "TEST.EPOH=3", "MODEL.MAX_MEM"])
    assert [p.split(":", 1)[0] for p in info.value.problems] == [
        "config file '" + str(path) + "'", "option 'TRAIN.LR=abc'", "option 'TEST.EPOH=3'", "option 'MODEL.MAX_MEM'"]
    assert "did you mean 'TEST.EPOCH'" in str(info.value)


def test_unknown_leaf_key_suggests_a_leaf_key_not_its_section() -> None:
    with pytest.raises(ConfigError) as info:
        merge_opts(get_default_config(), ["MODEL.FOO=1"])
    message = str(info.value)
    assert "'MODEL.FOO'" in message and "did you mean 'MODEL'" not in message
    assert "MODEL holds MODEL.PRETRAIN_FILE, MODEL.MAX_MEM" in message and "MODEL.BACKBONE.*" in message
    with pytest.raises(ConfigError, match=r"'TRAIN.FOO' \(no similar key exists; TRAIN holds TRAIN.LR"):
        merge_opts(get_default_config(), ["TRAIN.FOO.BAR=1"])  # never its own section TRAIN
    with pytest.raises(ConfigError, match=r"did you mean 'MODEL.CLS_HEAD.MODE'"):
        merge_opts(get_default_config(), ["MODEL.CLS_HEAD.MOD=multi"])
    with pytest.raises(ConfigError, match=r"did you mean 'MODEL.HEAD'"):  # a mapping is meant for a section
        merge_dict(get_default_config(), {"MODEL": {"HEAD_": {"TYPE": "CENTER"}}})


@pytest.mark.parametrize(
    ("text", "fragment", "exc"),
    [
        (None, "does not exist", FileNotFoundError),
        ("MODEL: [unclosed\n", "not valid YAML", ConfigError),
        ("- MODEL\n- TRAIN\n", "top level must be a mapping", ConfigError),
        ("TRAIN:\n  LR: 0.1\n  LR: 0.2\n", "duplicate key 'LR'", ConfigError),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, text: str | None, fragment: str, exc: type) -> None:
    path = tmp_path / "broken.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(exc) as info:
        merge_yaml(get_default_config(), path)
    assert "broken.yaml" in str(info.value) and fragment in str(info.value)


def test_failed_merge_leaves_config_unchanged(tmp_path: Path) -> None:
    cfg = get_default_config()
    path = write_yaml(tmp_path, "MODEL:\n  MAX_MEM: 3\nTRAIN:\n  AMP: 1\n")
    with pytest.raises(ConfigError):
        merge_yaml(cfg, path)
    assert cfg.MODEL.MAX_MEM == 150


# -- command-line options -----------------------------------------------------------------
def test_opts_override_yaml() -> None:
    cfg = load_config(
        resolve_experiment_config("hiptrack_got"),
        opts=["MODEL.MAX_MEM=100", "TRAIN.LR=1e-4", "DATA.TRAIN.DATASETS_NAME=[GOT10K_train_full]",
              "TRAIN.AMP=True", "MODEL.PRETRAIN_FILE=", "TEST.EPOCH=50"],
    )
    assert cfg.MODEL.MAX_MEM == 100 and cfg.TRAIN.LR == 1e-4 and cfg.TRAIN.AMP is True
    assert cfg.DATA.TRAIN.DATASETS_NAME == ["GOT10K_train_full"]
    assert cfg.MODEL.PRETRAIN_FILE == "" and cfg.TEST.EPOCH == 50


@pytest.mark.parametrize(
    ("opt", "fragment"),
    [
        ("MODEL.MAX_MEMM=3", "did you mean 'MODEL.MAX_MEM'"),
        ("MODEL.MAX_MEM=abc", "expected int"),
        ("TRAIN.AMP=1", "expected bool"),
        ("MODEL.MAX_MEM", "expected KEY=VALUE"),
        ("DATA.MEAN=[1,", "not valid YAML"),
        ("MODEL=3", "expects a mapping"),
        ("MODEL.BOTTLENECK_DIM=256", "no longer supported"),
    ],
)
def test_opts_errors_name_the_option(opt: str, fragment: str) -> None:
    cfg = get_default_config()
    with pytest.raises(ConfigError) as info:
        merge_opts(cfg, ["TRAIN.LR=0.5", opt])
    assert f"option '{opt}'" in str(info.value) and fragment in str(info.value)
    assert cfg.TRAIN.LR == 1e-4, "a failing option list applies nothing"


def test_opts_reject_a_plain_string() -> None:
    with pytest.raises(TypeError):
        merge_opts(get_default_config(), "MODEL.MAX_MEM=3")


# -- cross-field validation ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("opts", "keys"),
    [
        (["DATA.TRAIN.DATASETS_RATIO=[1, 1]"], ["DATA.TRAIN.DATASETS_NAME", "DATA.TRAIN.DATASETS_RATIO"]),
        (["DATA.VAL.DATASETS_NAME=[A, B]"], ["DATA.VAL.DATASETS_NAME", "DATA.VAL.DATASETS_RATIO"]),
        (["DATA.TRAIN.DATASETS_NAME=[]", "DATA.TRAIN.DATASETS_RATIO=[]"], ["DATA.TRAIN.DATASETS_NAME"]),
        (["DATA.SEARCH.SIZE=390", "TEST.SEARCH_SIZE=390"], ["DATA.SEARCH.SIZE", "MODEL.BACKBONE.STRIDE"]),
        (["DATA.TEMPLATE.SIZE=100", "TEST.TEMPLATE_SIZE=100"],
         ["DATA.TEMPLATE.SIZE", "MODEL.BACKBONE.STRIDE"]),
        (["TEST.SEARCH_SIZE=392"], ["TEST.SEARCH_SIZE (392) must be a multiple of MODEL.BACKBONE.STRIDE"]),
        (["TEST.SEARCH_SIZE=320"], ["TEST.SEARCH_SIZE", "DATA.SEARCH.SIZE"]),
        (["TEST.TEMPLATE_SIZE=128"], ["TEST.TEMPLATE_SIZE", "DATA.TEMPLATE.SIZE"]),
        (["MODEL.BACKBONE.CE_LOC=[3, 6]", "MODEL.BACKBONE.CE_KEEP_RATIO=[0.7]"],
         ["MODEL.BACKBONE.CE_LOC", "MODEL.BACKBONE.CE_KEEP_RATIO"]),
        (["MODEL.BACKBONE.CE_LOC=[6, 3]", "MODEL.BACKBONE.CE_KEEP_RATIO=[0.7, 0.7]"],
         ["MODEL.BACKBONE.CE_LOC"]),
        (["MODEL.BACKBONE.CE_LOC=[-1]", "MODEL.BACKBONE.CE_KEEP_RATIO=[0.7]"], ["MODEL.BACKBONE.CE_LOC"]),
        (["MODEL.BACKBONE.CE_LOC=[3]", "MODEL.BACKBONE.CE_KEEP_RATIO=[1.5]"],
         ["MODEL.BACKBONE.CE_KEEP_RATIO"]),
        (["MODEL.BACKBONE.CE_LOC=[3]", "MODEL.BACKBONE.CE_KEEP_RATIO=[0]"], ["MODEL.BACKBONE.CE_KEEP_RATIO"]),
        (["MODEL.MAX_MEM=0"], ["MODEL.MAX_MEM"]),
        (["MODEL.HIP.STEM_WIDTH=0"], ["MODEL.HIP.STEM_WIDTH"]),
        (["MODEL.HIP.STEM_WIDTH=16", "MODEL.HIP.ENCODER_PRETRAINED=resnet18.pth"],
         ["MODEL.HIP.ENCODER_PRETRAINED", "MODEL.HIP.STEM_WIDTH=16"]),
        (["TEST.UPDATE_INTERVAL=0"], ["TEST.UPDATE_INTERVAL"]),
        (["TEST.WARMUP_WRITE_FRAMES=[0, 5]"], ["TEST.WARMUP_WRITE_FRAMES"]),
        (["TEST.WARMUP_WRITE_FRAMES=[5, 11]"], ["TEST.WARMUP_WRITE_FRAMES"]),
        (["TEST.WARMUP_FRAMES=4"], ["TEST.WARMUP_WRITE_FRAMES"]),
        (["DATA.SEARCH.NUMBER=0"], ["DATA.SEARCH.NUMBER"]),
        (["TRAIN.LR=0"], ["TRAIN.LR"]),
        (["TRAIN.BATCH_SIZE=0"], ["TRAIN.BATCH_SIZE"]),
        (["TRAIN.LR_DROP_EPOCH=0"], ["TRAIN.LR_DROP_EPOCH"]),
        (["TRAIN.DROP_PATH_RATE=1.0"], ["TRAIN.DROP_PATH_RATE"]),
        (["TRAIN.SCHEDULER.TYPE=Mstep"], ["TRAIN.SCHEDULER.MILESTONES"]),
        (["DATA.STD=[0.2, 0.0, 0.2]"], ["DATA.STD"]),
    ],
)
def test_cross_field_checks(opts: list[str], keys: list[str]) -> None:
    cfg = merge_opts(get_default_config(), opts)
    with pytest.raises(ValueError) as info:
        validate_config(cfg)
    for key in keys:
        assert key in str(info.value)
    with pytest.raises(ValueError):
        load_config(opts=opts)
    load_config(opts=opts, validate=False)  # validation can be skipped explicitly


def test_validation_reports_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(opts=["MODEL.MAX_MEM=0", "TRAIN.LR=-1"])
    assert "MODEL.MAX_MEM" in str(info.value) and "TRAIN.LR" in str(info.value)


def test_valid_variants_pass() -> None:
    load_config(opts=["TRAIN.SCHEDULER.TYPE=Mstep", "TRAIN.SCHEDULER.MILESTONES=[50, 80]",
                      "TEST.WARMUP_FRAMES=0", "TEST.WARMUP_WRITE_FRAMES=[]", "TEST.PRECISION=bf16"])


MULTI = ["MODEL.CLS_HEAD.ENABLED=True", "MODEL.CLS_HEAD.MODE=multi"]


@pytest.mark.parametrize(
    ("opts", "fragments"),
    [
        (MULTI + ["TRAIN.CLS_LOSS_TYPE=FOCAL"],
         ["TRAIN.CLS_LOSS_TYPE: FOCAL is a single-label loss", "MODEL.CLS_HEAD.MODE: multi"]),
        (MULTI + ["TRAIN.CLS_LOSS_TYPE=LABEL_SMOOTH"], ["TRAIN.CLS_LOSS_TYPE: LABEL_SMOOTH", "MODEL.CLS_HEAD.MODE"]),
        (MULTI + [f"TRAIN.CLS_CLASS_WEIGHTS=[{', '.join(['1.0'] * 10)}]"],
         ["TRAIN.CLS_CLASS_WEIGHTS", "MODEL.CLS_HEAD.MODE: multi", "TRAIN.CLS_POS_WEIGHT"]),
        (MULTI + ["TRAIN.CLS_POS_WEIGHT=[1.0, 2.0]"], ["TRAIN.CLS_POS_WEIGHT has 2 entries",
                                                       "MODEL.CLS_HEAD.NUM_CLASSES is 10"]),
        (MULTI + [f"TRAIN.CLS_POS_WEIGHT=[{', '.join(['1.0'] * 9)}, 0.0]"],
         ["TRAIN.CLS_POS_WEIGHT entries must be finite and > 0"]),
        (MULTI + [f"TRAIN.CLS_POS_WEIGHT=[{', '.join(['1.0'] * 9)}, -2.0]"],
         ["TRAIN.CLS_POS_WEIGHT entries must be finite and > 0"]),
        ([f"TRAIN.CLS_POS_WEIGHT=[{', '.join(['1.0'] * 10)}]"],
         ["TRAIN.CLS_POS_WEIGHT needs MODEL.CLS_HEAD.MODE: multi"]),
        (["TRAIN.CLS_SOFT_TARGETS=True"], ["TRAIN.CLS_SOFT_TARGETS needs MODEL.CLS_HEAD.MODE: multi"]),
    ],
)
def test_multi_label_mode_checks_name_the_keys(opts: list[str], fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(opts=opts)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_multi_label_mode_valid_variants_pass() -> None:
    weights = f"[{', '.join(['2.5'] * 10)}]"
    cfg = load_config(opts=MULTI + [f"TRAIN.CLS_POS_WEIGHT={weights}", "TRAIN.CLS_SOFT_TARGETS=True"])
    assert cfg.TRAIN.CLS_POS_WEIGHT == [2.5] * 10 and cfg.TRAIN.CLS_SOFT_TARGETS is True
    # two-stage training is independent of the label mode
    load_config(opts=MULTI + ["TRAIN.TWO_STAGE=True", "TRAIN.STAGE1_EPOCHS=2", "TRAIN.STAGE2_EPOCHS=3",
                              "TRAIN.EPOCH=5"])
    assert load_config().TRAIN.CLS_POS_WEIGHT == [] and load_config().TRAIN.CLS_SOFT_TARGETS is False


# -- node behaviour -----------------------------------------------------------------------
def test_frozen_config_refuses_assignment() -> None:
    cfg = load_config()
    with pytest.raises(FrozenConfigError):
        cfg.MODEL.MAX_MEM = 3
    with pytest.raises(FrozenConfigError):
        cfg["TRAIN"]["LR"] = 0.1
    with pytest.raises(FrozenConfigError):
        merge_opts(cfg, ["MODEL.MAX_MEM=3"])
    assert cfg.MODEL.MAX_MEM == 150
    variant = cfg.clone()
    variant.MODEL.MAX_MEM = 3
    assert not variant.is_frozen() and cfg.MODEL.MAX_MEM == 150


def test_assignment_is_type_checked() -> None:
    cfg = get_default_config()
    cfg.TRAIN.LR = 1  # int is a valid float
    assert type(cfg.TRAIN.LR) is float
    with pytest.raises(ConfigError, match="TRAIN.AMP"):
        cfg.TRAIN.AMP = 1
    with pytest.raises(ConfigError, match="did you mean 'TRAIN.AMP'"):
        cfg.TRAIN.AMPP = True
    with pytest.raises(ConfigError, match="section"):
        cfg.MODEL = {}


def test_get_default_config_returns_independent_copies() -> None:
    first, second = get_default_config(), get_default_config()
    first.DATA.MEAN.append(1.0)
    first.MODEL.MAX_MEM = 3
    assert second.DATA.MEAN == [0.485, 0.456, 0.406] and second.MODEL.MAX_MEM == 150
    assert get_default_config().DATA.MEAN == [0.485, 0.456, 0.406]


def test_copy_and_pickle_round_trip() -> None:
    cfg = load_config(resolve_experiment_config("hiptrack_tiny"))
    for twin in (copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg))):
        assert twin == cfg and twin.is_frozen()
        assert twin.MODEL.BACKBONE.TYPE == "vit_tiny_test_ce"


# -- legacy keys --------------------------------------------------------------------------
def test_legacy_ignore_key_warns_and_is_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_yaml(tmp_path, "DATA:\n  MAX_JUMP: 70\nMODEL:\n  EXTRA_MERGER: False\n", name="old.yaml")
    with caplog.at_level(logging.WARNING):
        cfg = load_config(path)
    assert cfg == load_config()
    assert "MAX_JUMP" not in cfg.DATA
    text = caplog.text
    assert "old.yaml" in text and "DATA.MAX_JUMP" in text and "MODEL.EXTRA_MERGER" in text
    assert "the causal sampler uses DATA.MAX_SAMPLE_INTERVAL" in text


@pytest.mark.parametrize("key", [k for k, entry in LEGACY_KEYS.items() if entry.action == "ignore"])
def test_every_ignored_legacy_key_is_accepted(key: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        merge_opts(get_default_config(), [f"{key}=0"])
    assert key in caplog.text


def test_bottleneck_dim_raises_with_migration_text(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "MODEL:\n  BOTTLENECK_DIM: 256\n")
    with pytest.raises(ValueError) as info:
        load_config(path)
    assert "exp.yaml" in str(info.value)
    assert LEGACY_KEYS["MODEL.BOTTLENECK_DIM"].message in str(info.value)
    assert "Delete the key; enable fusion with MODEL.CLS_HEAD.FUSION: ADD." in str(info.value)


def test_original_hiptrack_yaml_still_loads(tmp_path: Path) -> None:
    """The authors' YAML (inert keys, ints for floats) loads with warnings only."""
    original = (
        "DATA:\n  MAX_SAMPLE_INTERVAL: 200\n  MAX_JUMP: 70\n  TEMPLATE:\n    CENTER_JITTER: 0\n"
        "MODEL:\n  NEW_HIP: True\n  EXTRA_MERGER: False\n  RETURN_INTER: False\n"
        "  BACKBONE:\n    CE_LOC: [3, 6, 9]\n    CE_KEEP_RATIO: [0.7, 0.7, 0.7]\n"
        "    CE_TEMPLATE_RANGE: 'CTR_POINT'\n"
    )
    cfg = load_config(write_yaml(tmp_path, original))
    assert cfg.DATA.TEMPLATE.CENTER_JITTER == 0.0 and cfg.DATA.MAX_SAMPLE_INTERVAL == 200


# -- serialisation and docs ---------------------------------------------------------------
def test_to_dict_round_trips_through_yaml(tmp_path: Path) -> None:
    cfg = load_config(resolve_experiment_config("hiptrack"), opts=["TRAIN.LR=3e-5", "TEST.PRECISION=bf16"])
    plain = cfg.to_dict()
    assert type(plain) is dict and type(plain["MODEL"]["BACKBONE"]) is dict
    assert type(plain["MODEL"]["BACKBONE"]["CE_LOC"]) is list
    out = cfg.dump_yaml(tmp_path / "run" / "config.yaml")
    assert sorted(p.name for p in out.parent.iterdir()) == ["config.yaml"], "no temporary file left"
    reloaded = merge_yaml(get_default_config(), out)
    assert reloaded == cfg and reloaded.to_dict() == plain
    assert config_from_dict(plain) == cfg


def test_describe_lists_every_key_with_a_comment() -> None:
    cfg = get_default_config()
    rows = describe(cfg)
    leaves = [dotted for dotted, _, _ in iter_leaves(cfg)]
    assert [dotted for dotted, _, _ in rows] == leaves
    assert len(leaves) == len(set(leaves)) > 60
    for dotted, default, comment in rows:
        assert comment.strip() and "\n" not in comment, dotted
        node = cfg
        for part in dotted.split("."):
            node = node[part]
        assert node == default, dotted


def test_key_declaration_checks() -> None:
    with pytest.raises(TypeError):
        Key(1, "")  # a comment is required
    with pytest.raises(TypeError):
        Key([], "empty list without an element type")
    with pytest.raises(TypeError):
        Key("c", "default outside the choices", choices=("a", "b"))
    assert Key([], "ok", elem_type=int).type_name == "list[int]"
    with pytest.raises(TypeError):
        CfgNode({"A": Key(1, "a")}, legacy_keys={"A": LegacyKey("ignore", "clash with a valid key")})
    with pytest.raises(TypeError):
        CfgNode({"A": Key(1, "a")}, legacy_keys={"B": ("ignore", "a plain tuple")})
    with pytest.raises(TypeError):
        CfgNode({"A": Key(1, "a")}, legacy_keys={"B": LegacyKey("renamed", "to a key that does not exist",
                                                                    new_key="C")})
    with pytest.raises(TypeError):
        LegacyKey("drop", "unknown action")


# -- experiment lookup --------------------------------------------------------------------
def test_resolve_experiment_config(tmp_path: Path) -> None:
    by_name = resolve_experiment_config("hiptrack_tiny")
    assert by_name == EXPERIMENTS_DIR / "hiptrack" / "hiptrack_tiny.yaml" and by_name.is_file()
    assert resolve_experiment_config("hiptrack_tiny.yaml") == by_name
    own = write_yaml(tmp_path, "MODEL:\n  MAX_MEM: 3\n", name="mine.yaml")
    assert resolve_experiment_config(own) == own
    assert resolve_experiment_config(str(own)) == own
    with pytest.raises(FileNotFoundError) as info:
        resolve_experiment_config("hiptrak")
    assert "hiptrak" in str(info.value) and "hiptrack_got" in str(info.value)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        resolve_experiment_config(tmp_path / "missing.yaml")


def test_num_classes_must_match_the_challenge_vocabulary() -> None:
    with pytest.raises(ConfigError, match=r"MODEL.CLS_HEAD.NUM_CLASSES must be 10.*Occlusion.*Normal\); got 5"):
        load_config(opts=["MODEL.CLS_HEAD.NUM_CLASSES=5"])


@pytest.mark.parametrize("key,value,other", [("MODEL.NEW_HIP", True, False), ("MODEL.BACKBONE.SEP_SEG", False, True),
                                             ("MODEL.BACKBONE.CAT_MODE", "direct", "concat"),
                                             ("MODEL.HEAD.TYPE", "CENTER", "CORNER"), ("TRAIN.OPTIMIZER", "ADAMW", "SGD"),
                                             ("DATA.SAMPLER_MODE", "causal", "trident")])
def test_single_value_legacy_keys_accept_only_that_value(key: str, value: object, other: object) -> None:
    assert load_config(opts=[f"{key}={value}"]) == load_config()
    with pytest.raises(ConfigError, match=rf"key '{key}' = .* is not supported: "):
        load_config(opts=[f"{key}={other}"])


def test_renamed_legacy_key_moves_its_value(caplog: pytest.LogCaptureFixture) -> None:
    schema = {"NEW": {"MODE": Key("a", "mode", choices=("a", "b"))}}
    legacy = {"NEW.FLAG": LegacyKey("renamed", "use NEW.MODE", new_key="NEW.MODE",
                                    convert=lambda flag: "b" if flag else "a")}
    with caplog.at_level(logging.WARNING):
        cfg = merge_opts(CfgNode(schema, legacy_keys=legacy), ["NEW.FLAG=True"])
    assert cfg.NEW.MODE == "b" and "NEW.FLAG" in caplog.text and "deprecated" in caplog.text
    with pytest.raises(ConfigError, match="NEW.MODE"):  # the converted value is checked like any other
        merge_dict(CfgNode(schema, legacy_keys={"NEW.FLAG": LegacyKey("renamed", "x", new_key="NEW.MODE")}),
                   {"NEW": {"FLAG": "c"}})


@pytest.mark.parametrize("stem_features, head_input", [(True, "tokens+stem"), (False, "tokens")])
def test_stem_features_is_read_as_the_head_input(stem_features: bool, head_input: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    opts = ["MODEL.CLS_HEAD.ENABLED=True", f"MODEL.CLS_HEAD.STEM_FEATURES={stem_features}"]
    with caplog.at_level(logging.WARNING):
        cfg = load_config(opts=opts)
    assert cfg.MODEL.CLS_HEAD.INPUT == head_input
    assert "MODEL.CLS_HEAD.STEM_FEATURES" in caplog.text and "deprecated" in caplog.text
    assert "STEM_FEATURES" not in cfg.MODEL.CLS_HEAD
    # the config stored in a checkpoint written before the rename
    stored = get_default_config().to_dict()
    del stored["MODEL"]["CLS_HEAD"]["INPUT"]
    stored["MODEL"]["CLS_HEAD"].update(ENABLED=True, STEM_FEATURES=stem_features)
    assert config_from_dict(stored, source="checkpoint").MODEL.CLS_HEAD.INPUT == head_input


def test_stem_features_takes_only_a_bool() -> None:
    with pytest.raises(ConfigError, match="MODEL.CLS_HEAD.INPUT"):
        load_config(opts=["MODEL.CLS_HEAD.ENABLED=True", "MODEL.CLS_HEAD.STEM_FEATURES=1"])


def test_test_crop_sizes_follow_the_data_sizes_unless_set() -> None:
    cfg = load_config(opts=["DATA.SEARCH.SIZE=256", "DATA.TEMPLATE.SIZE=128"])
    assert (cfg.TEST.SEARCH_SIZE, cfg.TEST.TEMPLATE_SIZE) == (256, 128)
    assert get_default_config().TEST.SEARCH_SIZE == 0  # 0 = derived
    assert config_from_dict(get_default_config().to_dict()).TEST.SEARCH_SIZE == 384
    with pytest.raises(ConfigError, match="TEST.SEARCH_SIZE"):
        load_config(opts=["DATA.SEARCH.SIZE=256", "TEST.SEARCH_SIZE=384"])
