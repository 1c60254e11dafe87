"""`alexnet summary`: the paper's totals (docs/paper.md §2), the course notes' shape printout (§10),
the ablations, config files and overrides, and shapes checked against the built network."""
import pytest
import torch
import yaml

from conftest import course_notes_model
from paper_alexnet.app import cli
from paper_alexnet.config import ConfigError, ModelConfig
from paper_alexnet.model import AlexNet
from paper_alexnet.app.summary import main, model_config, render, shape_trace, tower_rows

torch.set_num_threads(2)


def _run(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_paper_totals_and_crossings(capsys):
    rc, out, _ = _run(capsys, [])
    assert rc == 0
    assert "total parameters: 60,965,224 (conv 2,334,080, fc 58,631,144)" in out
    assert "total multiply-adds per image: 0.724 G (conv 0.666 G, fc 0.059 G)" in out
    assert "layers that cross towers (see both towers' outputs): conv3, fc6, fc7, fc8" in out
    assert "tower A on " in out and "tower B on " in out
    rc, out, _ = _run(capsys, ["model.devices=[cpu, cpu]"])
    assert "devices (model.devices=['cpu', 'cpu']): tower A on cpu, tower B on cpu, fc8 on cpu" in out
    for name, params in [("conv1", "34,944"), ("conv3", "885,120"), ("fc6", "37,752,832"),
                         ("fc8", "4,097,000")]:
        assert any(line.split()[:2] == [name, params] for line in out.splitlines()), name


def test_macs_written_out_by_hand():
    """conv: out_h·out_w·k²·c_in·c_out per tower; fc: in·out (docs/paper.md §2: 0.666 + 0.059 G)."""
    rows = {r["name"]: r for r in tower_rows(ModelConfig())}
    assert rows["conv1"]["macs"] == 55 * 55 * 11 * 11 * 3 * 48
    assert rows["conv3"]["macs"] == 13 * 13 * 3 * 3 * 256 * 192
    assert rows["fc6"]["macs"] == 9216 * 2048
    conv = sum(r["macs"] * r["towers"] for n, r in rows.items() if n.startswith("conv"))
    fc = sum(r["macs"] * r["towers"] for n, r in rows.items() if n.startswith("fc"))
    assert round(conv / 1e9, 3) == 0.666 and round(fc / 1e9, 3) == 0.059


def test_course_notes_preset_prints_the_notes_shapes(capsys):
    rc, out, _ = _run(capsys, ["--preset", "course_notes"])
    assert rc == 0
    trace = shape_trace(course_notes_model())
    sides = [shape[-1] for name, op, shape in trace if op in ("Conv2d", "MaxPool2d")]
    assert sides == [54, 26, 26, 12, 12, 12, 12, 5]      # docs/paper.md §10
    assert ("", "Flatten", (1, 6400)) in trace
    assert trace[-1] == ("fc8", "Linear", (1, 10))
    assert "Flatten output shape:" in out and "(1, 6400)" in out
    assert "total parameters: 46,764,746" in out          # single tower, full widths
    assert "none (single tower)" in out


def _hooked_shapes(model, x):
    """(op name, output shape) of every module call of a single-tower model, in order."""
    calls = []
    for name, module in model.named_modules():
        if name and not list(module.children()):
            module.register_forward_hook(
                lambda m, i, o, n=type(module).__name__: calls.append((n, tuple(o.shape))))
    with torch.no_grad():
        model.eval()(x)
    return calls


def test_shape_trace_matches_the_built_network():
    cfg = course_notes_model()
    calls = _hooked_shapes(AlexNet(cfg), torch.randn(1, 1, 224, 224))
    expected = [(op, shape) for _, op, shape in shape_trace(cfg) if op != "Flatten"]
    assert calls == expected


def test_two_tower_trace_matches_hooks_on_tower_a():
    model = AlexNet().eval()
    shapes = {}
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"):
        getattr(model.tower_a, name).register_forward_hook(
            lambda m, i, o, n=name: shapes.__setitem__(n, (tuple(i[0].shape), tuple(o.shape))))
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    trace = shape_trace(ModelConfig())
    for name, (in_shape, out_shape) in shapes.items():
        at = [i for i, (n, _, _) in enumerate(trace) if n == name][0]
        assert trace[at][2] == out_shape, name
        if name in ("conv3", "fc6", "fc7"):               # its input: both towers side by side
            assert trace[at - 1][1].startswith("cat") and trace[at - 1][2] == in_shape, name


def test_ablations_are_printed(capsys):
    rc, out, _ = _run(capsys, ["removed_layer=conv3", "model.lrn=off"])
    assert rc == 0
    conv3 = next(line for line in out.splitlines() if line.split()[:1] == ["conv3"])
    conv4 = next(line for line in out.splitlines() if line.split()[:1] == ["conv4"])
    assert "removed: identity" in conv3 and "256×13×13 both towers' conv2" in conv3
    assert "256×13×13 own conv3" in conv4
    conv1 = next(line for line in out.splitlines() if line.split()[:1] == ["conv1"])
    assert "relu → maxpool" in conv1 and "LocalResponseNorm" not in out
    rc, out, _ = _run(capsys, ["layout=one_tower_half", "pooling=non_overlapping"])
    assert "tower B" not in out and "(1, 256, 6, 6)" in out


def test_run_config_file_and_overrides(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"model": {"num_classes": 10, "lrn": "caffe"},
                                    "optim": {"lr": 0.02}}))
    cfg = model_config(path, "course_notes", ["dropout=0.25"])
    assert (cfg.num_classes, cfg.lrn, cfg.layout, cfg.dropout) == (10, "caffe", "one_tower", 0.25)
    rc, out, _ = _run(capsys, ["--config", str(path), "model.num_classes=20"])
    assert rc == 0 and "20 classes" in out


def test_errors_name_the_key(capsys):
    rc, _, err = _run(capsys, ["lrn=sometimes"])
    assert rc == 2 and "model.lrn" in err and "sometimes" in err
    rc, _, err = _run(capsys, ["model.devices=[cuda:99]"])
    assert rc == 2 and "'cuda:99' does not exist" in err
    with pytest.raises(ConfigError, match="course"):
        model_config(None, "courses", [])


def test_cli_dispatches_to_summary(capsys):
    assert cli.main(["summary", "model.num_classes=10"]) == 0
    assert "10 classes" in capsys.readouterr().out


def test_render_of_every_removed_layer_keeps_6x6_pool5():
    for layer in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        text = render(ModelConfig(removed_layer=layer))
        assert "removed:" in text and "MaxPool2d output shape:" in text
        assert [line for line in text.splitlines() if "Flatten" in line][0].endswith(
            f"(1, {(192 if layer == 'conv5' else 128) * 36})")


@pytest.mark.parametrize("argv", [["--config", "relu_vs_tanh"],
                                  ["model.arch=cifar10_4layer", "model.input_size=32",
                                   "model.num_classes=10"],
                                  ["model.arch=cifar10_4layer", "model.input_size=64",
                                   "model.num_classes=4", "activation=tanh"]])
def test_the_figure1_net_is_summarised_as_built(capsys, argv):
    """Every model.arch has a summary; the Figure 1 net's numbers are those of the built net."""
    from paper_alexnet.cifar_net import Figure1Net, layers
    rc, out, err = _run(capsys, argv)
    assert rc == 0, err
    cfg = model_config(None if argv[0] != "--config" else argv[1], "paper",
                       [] if argv[0] == "--config" else argv)
    net = Figure1Net(cfg)
    assert f"total parameters: {sum(p.numel() for p in net.parameters()):,}" in out
    assert "one tower" in out and "two_towers" not in out and cfg.activation in out
    shapes = {}
    for name in ("conv1", "conv2", "conv3", "fc64", "fc10"):
        module = {"conv1": net.pool1, "conv2": net.pool2, "conv3": net.pool3}.get(name,
                                                                                  getattr(net, name))
        module.register_forward_hook(lambda m, i, o, name=name: shapes.update({name: o.shape[1:]}))
    net(torch.zeros(1, cfg.in_channels, cfg.input_size, cfg.input_size))
    for row in layers(cfg):
        layer = getattr(net, row["name"])
        assert tuple(shapes[row["name"]]) == row["output"], row
        assert row["params"] == sum(p.numel() for p in layer.parameters()), row
    rows = {r["name"]: r for r in layers(cfg)}
    side = cfg.input_size
    assert rows["conv1"]["macs"] == side * side * 5 * 5 * cfg.in_channels * 32
    assert rows["fc10"]["macs"] == 64 * cfg.num_classes
