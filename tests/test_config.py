"""config.py (docs/ARCHITECTURE.md decision 3): defaults are the paper, YAML + overrides, errors
that name the key, frozen configs, YAML round trips."""
import dataclasses
import typing

import pytest
import yaml

from conftest import course_notes_model
from paper_alexnet import config
from paper_alexnet.config import ConfigError, ModelConfig, RunConfig


def test_defaults_are_the_paper():
    cfg = config.load()
    assert cfg == RunConfig()
    m = cfg.model
    assert (m.arch, m.layout, m.input_size, m.conv1_padding, m.lrn, m.pooling, m.dropout,
            m.removed_layer, m.init, m.num_classes, m.devices) == \
        ("alexnet", "two_towers", 224, "alex", "cuda-convnet", "overlapping", 0.5, "none", "paper", 1000,
         ("auto",))
    o = cfg.optim
    assert (o.lr, o.momentum, o.weight_decay, o.batch_size) == (0.01, 0.9, 0.0005, 128)
    assert (cfg.schedule.factor, cfg.schedule.max_drops, cfg.train.epochs) == (0.1, 3, 90)


def test_every_field_cites_its_source_and_its_default_is_a_valid_choice():
    for section, cls in typing.get_type_hints(RunConfig).items():
        for f in dataclasses.fields(cls):
            assert f.metadata.get("ref"), f"{section}.{f.name} has no reference"
            if "choices" in f.metadata:
                assert f.default in f.metadata["choices"], f"{section}.{f.name}"


def test_course_notes_preset():
    m = course_notes_model()
    assert (m.layout, m.in_channels, m.num_classes, m.lrn, m.conv1_padding) == \
        ("one_tower", 1, 10, "off", "1")


@pytest.mark.parametrize("override, message", [
    ("modle.lrn=off", "unknown key(s) modle"),
    ("model.lrnn=off", "unknown key(s) model.lrnn"),
    ("model.num_classes=ten", "model.num_classes: expected an integer"),
    ("model.num_classes=true", "model.num_classes: expected an integer"),
    ("model.num_classes=10.0", "model.num_classes: expected an integer"),
    ("train.compile=1", "train.compile: expected true or false"),
    ("optim.lr=fast", "optim.lr: expected a number"),
    ("optim.lr=.inf", "optim.lr: expected a finite number"),
    ("model.lrn=[cuda-convnet]", "model.lrn: expected a string"),
    ("model.devices={a: 1}", "model.devices: expected a list"),
    ("model.lrn=sometimes", "model.lrn: 'sometimes' is not one of cuda-convnet, as-printed, caffe, off"),
    ("model.lrn=paper", "model.lrn: 'paper' is not one of cuda-convnet, as-printed, caffe, off "
                        "('paper' was renamed 'as-printed': use model.lrn=as-printed)"),
    ("model.layout=three_towers", "model.layout: 'three_towers' is not one of"),
    ("model.num_classes=1", "model.num_classes: 1 is below the minimum 2"),
    ("model.dropout=1.5", "model.dropout: 1.5 must be below 1.0; the default is 0.5"),
    ("optim.lr=-0.1", "optim.lr: -0.1 must be above 0.0; the default is 0.01"),
    ("optim.lr=0", "optim.lr: 0.0 must be above 0.0; the default is 0.01"),
    ("optim.momentum=5", "optim.momentum: 5.0 must be below 1.0; the default is 0.9"),
    ("schedule.factor=1", "schedule.factor: 1.0 must be below 1.0"),
    ("data.workers=many", "data.workers: expected an integer, got 'many'"),
    ("data.workers=-1", "data.workers: -1 is below the minimum 0; the default is 'auto'"),
    ("model=3", "model: expected a mapping"),
    ("model.lrn", "is not of the form section.key=value"),
    ("model.lrn=[", "value is not valid YAML"),
    ("optim.lr.x=1", "optim.lr: expected a number"),
    (["optim.lr=0.1", "optim.lr.x=1"], "lr is not a section"),
])
def test_bad_overrides_are_rejected_naming_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        config.load(None, [override] if isinstance(override, str) else override)
    assert message in str(err.value)


def test_overrides_are_parsed_as_yaml_and_coerced():
    cfg = config.load(None, ["optim.lr=1e-3", "optim.momentum=0", "model.devices=[cuda:0, cpu]",
                             "model.conv1_padding=1", "model.lrn=off", "schedule.milestones=50",
                             "train.compile=true", "model.dropout=0"])
    assert cfg.optim.lr == 0.001 and isinstance(cfg.optim.momentum, float)
    assert cfg.model.devices == ("cuda:0", "cpu")
    assert cfg.model.conv1_padding == "1" and cfg.model.lrn == "off"
    assert cfg.schedule.milestones == (50,) and cfg.train.compile is True
    assert cfg.model.dropout == 0.0
    assert config.load(None, ["model.devices=cpu"]).model.devices == ("cpu",)
    assert config.load(None, ["data.workers=auto"]).data.workers == "auto"
    assert config.load(None, ["data.workers=3"]).data.workers == 3


def test_errors_blame_the_command_line_or_the_file(tmp_path):
    """A bad value set on the command line is blamed on that override, not on the recipe; a bad
    value in the recipe names the recipe."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("optim:\n  lr: 0.02\n")
    with pytest.raises(ConfigError) as err:
        config.load(recipe, ["train.epochs=2", "optim.momentum=5"])
    assert str(err.value).endswith("(from the command line: optim.momentum=5)")
    assert "recipe.yaml" not in str(err.value) and err.value.key == "optim.momentum"
    with pytest.raises(ConfigError, match=r"unknown key\(s\) optim.lrr.*command line: optim.lrr=1"):
        config.load(recipe, ["optim.lrr=1"])
    recipe.write_text("optim:\n  lr: 0\n")
    with pytest.raises(ConfigError, match=r"optim.lr: 0.0 must be above 0.0.*\(from .*recipe.yaml\)$"):
        config.load(recipe, ["optim.momentum=0.5"])
    assert config.load(recipe, ["optim.lr=0.1"]).optim.lr == 0.1    # the override fixes it


def test_file_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  lrn: caffe\n  input_size: 227\noptim:\n  lr: 0.02\n")
    cfg = config.load(path, ["optim.lr=0.03"])
    assert (cfg.model.lrn, cfg.model.input_size, cfg.optim.lr) == ("caffe", 227, 0.03)
    assert cfg.data == RunConfig().data


def test_empty_file_and_empty_section(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert config.load(empty) == RunConfig()
    section = tmp_path / "section.yaml"
    section.write_text("model:\noptim:\n")
    assert config.load(section, ["model.lrn=caffe"]).model.lrn == "caffe"


def test_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="cannot read config file .*missing.yaml"):
        config.load(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        config.load(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml must hold a mapping"):
        config.load(listing)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("model:\n  lrn: nope\n")
    with pytest.raises(ConfigError, match=r"model.lrn: 'nope' .*\(from .*wrong.yaml\)"):
        config.load(wrong)


def test_configs_are_frozen():
    cfg = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.lrn = "off"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim = None


@pytest.mark.parametrize("cfg", [
    RunConfig(),
    RunConfig(model=course_notes_model()),
    config.load(None, ["model.lrn=off", "model.devices=[cuda:0, cuda:1]", "optim.lr=1e-4",
                       "schedule.kind=milestones", "schedule.milestones=[10, 20]",
                       "model.conv1_padding=2", "data.pca_scale=eigval"]),
])
def test_yaml_round_trip(cfg, tmp_path):
    text = config.dump(cfg)
    assert config.build(RunConfig, yaml.safe_load(text)) == cfg
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert config.load(path) == cfg
    plain = config.to_dict(cfg)
    assert isinstance(plain["model"]["devices"], list)
    assert config.build(RunConfig, plain) == cfg


def test_build_a_single_section():
    assert config.build(ModelConfig, {"lrn": "caffe"}) == ModelConfig(lrn="caffe")
    assert config.load(None, ["lrn=off"], cls=ModelConfig) == ModelConfig(lrn="off")
    with pytest.raises(ConfigError, match="valid keys here: arch, layout"):
        config.build(ModelConfig, {"towers": 2})


def test_differences_name_each_changed_key_with_both_values():
    cfg = config.load(None, ["optim.lr=0.02", "model.dropout=0.0", "optim.momentum=0.8"])
    assert config.differences(cfg) == {"model.dropout": [0.5, 0.0], "optim.lr": [0.01, 0.02],
                                       "optim.momentum": [0.9, 0.8]}
    assert list(config.differences(cfg)) == [k for k in config.flatten(config.to_dict(cfg))
                                             if k in ("model.dropout", "optim.lr", "optim.momentum")]
    other = config.load(None, ["optim.lr=0.02"])
    assert config.differences(cfg, other) == {"model.dropout": [0.5, 0.0],
                                              "optim.momentum": [0.9, 0.8]}
    assert config.differences(config.to_dict(cfg), config.to_dict(other)) == \
        config.differences(cfg, other)
    assert config.differences(RunConfig()) == {} and config.differences(cfg, cfg) == {}
    # a key the reference does not have (a dict of another version) differs
    older = config.to_dict(RunConfig())
    del older["optim"]["lr"]
    assert config.differences(RunConfig(), older) == {"optim.lr": [None, 0.01]}


# ----------------------------------------------- checked once, where a config is made; key roles

@pytest.mark.parametrize("make", [
    lambda: ModelConfig(layout="three_towers"),
    lambda: dataclasses.replace(RunConfig().model, layout="three_towers"),
    lambda: config.build(RunConfig, {"model": {"layout": "three_towers"}}),
])
def test_a_section_checks_its_values_however_it_is_made(make):
    with pytest.raises(ConfigError, match="model.layout: 'three_towers' is not one of") as err:
        make()
    assert err.value.key == "model.layout"


def test_a_section_made_in_python_is_coerced_as_from_yaml():
    m = ModelConfig(devices=["cpu"], conv1_padding=1)
    assert (m.devices, m.conv1_padding) == (("cpu",), "1")
    assert config.OptimConfig(lr=1).lr == 1.0 and isinstance(config.OptimConfig(lr=1).lr, float)
    with pytest.raises(ConfigError, match="schedule.factor: 1.5 must be below 1.0"):
        config.ScheduleConfig(factor=1.5)


def test_key_lists_are_read_from_the_fields_roles():
    """The lists resume, evaluation and recipe matching use, as they were written by hand before
    the roles were declared on the fields: a role dropped from a field changes one of them."""
    from experiments import recipes
    from paper_alexnet import evaluate, resume
    assert set(resume.RESUME_MAY_CHANGE) == {
        "train.epochs", "train.log_every", "train.checkpoint_every", "train.keep_last",
        "train.milestone_every", "train.compile", "data.workers", "model.devices",
        "eval.batch_size", "eval.ten_crop", "train.not_learning_epochs"}
    assert resume.ON_REQUEST == ("optim.lr",)
    assert set(evaluate.INPUT_KEYS) == {"data.mean", "data.geometry", "model.input_size",
                                        "model.in_channels", "model.num_classes"}
    assert set(evaluate.HOLDOUT_KEYS) == {"schedule.signal_split", "data.holdout"}
    assert set(evaluate.EVAL_SETTINGS) == {"data.workers", "data.backend", "eval.batch_size",
                                           "eval.ten_crop", "model.devices", "train.precision",
                                           "train.channels_last"}
    train_keys = {f"train.{f.name}" for f in dataclasses.fields(config.TrainConfig)}
    assert set(recipes.SCALE_KEYS) == train_keys | {
        "optim.batch_size", "eval.batch_size", "data.workers", "data.backend", "data.holdout",
        "model.devices", "model.lrn_impl"}
    with pytest.raises(ValueError, match="unknown role 'resumable'"):
        config.keys_with("resumable")
    with pytest.raises(ValueError, match="unknown role"):
        config._value(1, "ref", roles=("resumable",))
