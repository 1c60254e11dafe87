"""§3, Fig. 2 in numbers: `alexnet summary` prints, per tower and per layer, the output shape, the
parameters and the multiply-adds, the totals, which layers cross towers and where each tower runs.

    alexnet summary                               # the paper: 60,965,224 parameters, 0.724 GMAC
    alexnet summary --preset course_notes         # docs/paper.md §10, the notes' shape printout
    alexnet summary --config run.yaml model.removed_layer=conv3 lrn=off
    alexnet summary --config relu_vs_tanh         # the Figure 1 net (model.arch=cifar10_4layer)

Everything is computed from `model.architecture(config)` (`cifar_net.layers(config)` for the
Figure 1 net; no weights are made); tests check it
against the built network. Overrides without a section name the model section (`lrn=off`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from data_prep import exits
from paper_alexnet import config as config_lib
from paper_alexnet.config import ConfigError, ModelConfig, RunConfig

# preset -> the recipe whose model section it is (each preset written once, as a recipe)
PRESETS = {"paper": "paper", "course_notes": "course_notes_fashion_mnist"}
SECTIONS = tuple(f.name for f in dataclasses.fields(RunConfig))


def preset_overrides(preset: str) -> list[str]:
    """`model.key=value` strings turning the paper's defaults into the preset (JSON is YAML)."""
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r} is not one of {', '.join(PRESETS)}")
    base = config_lib.to_dict(ModelConfig())
    target = config_lib.to_dict(config_lib.load(config_lib.find_config(PRESETS[preset])).model)
    return [f"model.{k}={json.dumps(v)}" for k, v in target.items() if base[k] != v]


def model_config(path=None, preset: str = "paper", overrides=()) -> ModelConfig:
    """The model section of a run config: defaults ← preset ← --config file ← overrides."""
    qualified = [o if o.split("=", 1)[0].split(".", 1)[0] in SECTIONS else f"model.{o}"
                 for o in overrides]
    base = preset_overrides(preset)
    if path is not None:       # the file overrides the preset: fold the preset into its values
        values = config_lib.apply_overrides(config_lib.read_yaml(path), [])
        model = values.get("model") or {}
        if not isinstance(model, dict):
            raise ConfigError(f"config file {path}: 'model' must be a mapping, got {model!r}")
        base = [o for o in base if o.split("=", 1)[0].split(".", 1)[1] not in model]
    return config_lib.load(path, base + qualified).model


def _shape(*dims) -> str:
    return "×".join(str(d) for d in dims)


def tower_rows(cfg: ModelConfig) -> list[dict]:
    """One row per layer of ONE tower (fc8 last, shared): what it is, what it sees, its output,
    what follows it, parameters and multiply-adds of one copy, copies, whether it crosses."""
    from paper_alexnet.model import architecture, conv1_padding
    pad = conv1_padding(cfg.conv1_padding, cfg.input_size, cfg.input_size)
    side, previous = cfg.input_size + pad[2] + pad[3], None
    follow = {"act": cfg.activation, "lrn": "LRN", "pool": "maxpool"}
    rows = []
    for layer in architecture(cfg):
        source = "image" if previous is None else \
            ("both towers' " if layer.crosses else "own ") + previous
        if layer.kind == "conv":
            seen = f"{_shape(layer.in_features, side, side)} {source}"
            what = (("removed: 11×11/4 average" if layer.name == "conv1" else "removed: identity")
                    if layer.removed else f"{layer.kernel}×{layer.kernel}/{layer.stride}")
            out = _shape(layer.out_features, layer.size, layer.size)
            side = layer.pooled
        else:
            seen, out = f"{layer.in_features} {source}", str(layer.out_features)
            what = "fully connected"
        rows.append(dict(name=layer.name, what=what, input=seen, output=out,
                         then=" → ".join(follow[t] for t in layer.then) or "-",
                         params=layer.params, macs=layer.macs, towers=layer.towers,
                         crosses=layer.crosses))
        previous = layer.name
    return rows


def shape_trace(cfg: ModelConfig, batch: int = 1) -> list[tuple[str, str, tuple]]:
    """(layer, operation, output shape) of tower A for a (batch, C, H, W) input, op by op, as the
    course notes print it (docs/paper.md §10)."""
    from paper_alexnet.model import architecture
    ops = {"act": "ReLU" if cfg.activation == "relu" else "Tanh", "lrn": "LocalResponseNorm",
           "pool": "MaxPool2d"}
    trace = []
    side = None
    for layer in architecture(cfg):
        if layer.name == "fc6":
            trace.append(("", "Flatten", (batch, layer.in_features // layer.towers)))
        if layer.crosses:    # the tower's input is both towers' outputs side by side
            trace.append(("", "cat(tower A, tower B)",
                          (batch, layer.in_features) + ((side, side) if layer.kind == "conv" else ())))
        kind = ("AvgPool2d" if layer.name == "conv1" else "Identity") if layer.removed else \
            ("Conv2d" if layer.kind == "conv" else "Linear")
        out = (batch, layer.out_features) + ((layer.size,) * 2 if layer.kind == "conv" else ())
        trace.append((layer.name, kind, out))
        for op in layer.then:
            if op == "pool":
                out = (batch, layer.out_features, layer.pooled, layer.pooled)
            trace.append(("", ops[op], out))
        if layer.name in ("fc6", "fc7") and cfg.dropout > 0:
            trace.append(("", "Dropout", out))
        side = layer.pooled
    return trace


def _layer_tables(rows, towers: int, dev_a, dev_b) -> list[str]:
    """One table per tower, then fc8's (one layer, on tower A's device)."""
    row = "  {:<6} {:<25} {:<32} {:<10} {:<22} {:>12} {:>13}"
    header = row.format("layer", "kernel", "input", "output", "then", "params", "MACs")
    lines = []
    for tower, device in zip(["A", "B"][:towers], (dev_a, dev_b)):
        lines += [f"tower {tower} on {device}" + (" (single tower)" if towers == 1 else ""), header]
        lines += [row.format(r["name"], r["what"], r["input"], r["output"], r["then"],
                             f"{r['params']:,}", f"{r['macs']:,}") for r in rows[:-1]]
    fc8 = rows[-1]
    return lines + [f"fc8 on {dev_a} (one layer)", header,
                    row.format("fc8", fc8["what"], fc8["input"], fc8["output"],
                               "softmax in the loss", f"{fc8['params']:,}", f"{fc8['macs']:,}"), ""]


def _totals(rows) -> list[str]:
    """Parameters and multiply-adds per layer over all towers, their totals, and the crossings."""
    lines = ["per layer, all towers:"]
    total_p = {"conv": 0, "fc": 0}
    total_m = {"conv": 0, "fc": 0}
    for r in rows:
        p, m = r["params"] * r["towers"], r["macs"] * r["towers"]
        kind = "conv" if r["name"].startswith("conv") else "fc"
        total_p[kind] += p
        total_m[kind] += m
        lines.append(f"  {r['name']:<6} {p:>12,} parameters {m / 1e9:>8.4f} GMAC")
    params, macs = sum(total_p.values()), sum(total_m.values())
    lines += ["",
              f"total parameters: {params:,} (conv {total_p['conv']:,}, fc {total_p['fc']:,})",
              f"total multiply-adds per image: {macs / 1e9:.3f} G (conv {total_m['conv'] / 1e9:.3f} G, "
              f"fc {total_m['fc'] / 1e9:.3f} G)"]
    crossing = [r["name"] for r in rows if r["crosses"]]
    lines.append("layers that cross towers (see both towers' outputs): "
                 + (", ".join(crossing) if crossing else "none (single tower)"))
    return lines


def render(cfg: ModelConfig, devices=None) -> str:
    """The summary as text (what `alexnet summary` prints), for every model.arch."""
    if cfg.arch == "cifar10_4layer":
        return render_figure1(cfg, devices)
    if cfg.arch != "alexnet":
        raise ConfigError(f"model.arch: {cfg.arch!r} is not one of alexnet, cifar10_4layer")
    from paper_alexnet.placement import resolve_devices
    rows = tower_rows(cfg)
    towers = rows[0]["towers"]
    spec = cfg.devices if devices is None else devices
    dev_a, dev_b = resolve_devices(spec)
    lines = [f"AlexNet (§3, Fig. 2): layout={cfg.layout}, input "
             f"{_shape(cfg.in_channels, cfg.input_size, cfg.input_size)} (conv1_padding="
             f"{cfg.conv1_padding}), {cfg.num_classes} classes, removed_layer={cfg.removed_layer}",
             f"  lrn={cfg.lrn}, pooling={cfg.pooling}, activation={cfg.activation}, "
             f"dropout={cfg.dropout}, init={cfg.init}",
             f"devices (model.devices={list(spec)}): tower A on {dev_a}"
             + (f", tower B on {dev_b}" if towers == 2 else " (single tower)")
             + f", fc8 on {dev_a}", ""]
    lines += _layer_tables(rows, towers, dev_a, dev_b) + _totals(rows)
    image = _shape(1, cfg.in_channels, cfg.input_size, cfg.input_size)
    lines += ["", f"output shapes of tower A for a {image} input:"]
    for name, op, shape in shape_trace(cfg):
        lines.append(f"  {name:<6} {op + ' output shape:':<32} {tuple(shape)}")
    return "\n".join(lines)


def render_figure1(cfg: ModelConfig, devices=None) -> str:
    """The Figure 1 net (§3.1; cifar_net.py, inferred from the author's layers-80sec config): one
    tower, so the AlexNet-only keys (layout, lrn, pooling, removed_layer, dropout, init,
    conv1_padding) are said not to apply rather than printed as if they did."""
    from paper_alexnet.cifar_net import layers
    from paper_alexnet.placement import resolve_devices
    spec = cfg.devices if devices is None else devices
    device, _ = resolve_devices(spec)
    rows = layers(cfg)
    lines = [f"Figure 1 net (§3.1, model.arch=cifar10_4layer; inferred from the author's "
             f"layers-80sec config): input {_shape(cfg.in_channels, cfg.input_size, cfg.input_size)}"
             f", {cfg.num_classes} classes, activation={cfg.activation}",
             "  one tower; model.layout, lrn, pooling, removed_layer, dropout, init and "
             "conv1_padding are AlexNet's and do not apply",
             f"devices (model.devices={list(spec)}): every layer on {device}", ""]
    row = "  {:<6} {:<36} {:<10} {:>10} {:>12}"
    lines.append(row.format("layer", "kernel, then", "output", "params", "MACs"))
    lines += [row.format(r["name"], r["what"], _shape(*r["output"]), f"{r['params']:,}",
                         f"{r['macs']:,}") for r in rows]
    params, macs = sum(r["params"] for r in rows), sum(r["macs"] for r in rows)
    lines += ["", f"total parameters: {params:,}",
              f"total multiply-adds per image: {macs / 1e6:.1f} M"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="alexnet summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="a run config YAML or a recipe name, e.g. no_lrn (its "
                        "model section is summarised; default: none, start from --preset)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                        help="starting point: the paper or the course notes (docs/paper.md §10; "
                             "default: %(default)s)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="model overrides, e.g. lrn=off or model.removed_layer=conv3")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from paper_alexnet.placement import PlacementError

    def work():
        print(render(model_config(args.config, args.preset, args.overrides)))
    return exits.run("alexnet summary", work, usage=(ConfigError, PlacementError))


if __name__ == "__main__":
    raise SystemExit(main())
