"""§6.1, Figures 3 and 4: what the trained network learned.

Figure 3: the conv1 kernels as an image, tower A's 48 above tower B's 48, each kernel scaled to the
full 0-255 range on its own (as the paper's figure does). The paper says tower A's kernels are
"largely colour-agnostic" and tower B's "largely colour-specific"; we MEASURE that with a
colour-specificity score per kernel:

    w' = w − mean(w)                                   (the 3×h×w kernel, centred)
    g  = mean over the 3 colour channels of w'         (its grey part, h×w)
    score = Σ (w' − g)² / Σ w'²                        (the share of its energy that is colour)

0 = the same filter on R, G and B (colour-agnostic); 2/3 = a filter on one channel only; 1 = a
colour-opponent filter (e.g. R = −G). A tower's score is the mean over its kernels.

Figure 4: for a few validation images, the training images whose fc7 activations (4096 units, eval
mode, centre crop) are nearest by Euclidean distance, and the network's top-5 predictions.
PNGs are made with PIL (no matplotlib needed); labels and distances go into the markdown table.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from paper_alexnet import checkpoint, config


def colour_specificity(kernels: np.ndarray) -> np.ndarray:
    """Pure function: kernels (K, 3, h, w) -> scores (K,) in [0, 1] (see the module docstring)."""
    w = np.asarray(kernels, dtype=np.float64)
    if w.ndim != 4 or w.shape[1] != 3:
        raise ValueError(f"colour_specificity: expected (K, 3, h, w) kernels, got {w.shape}")
    w = w - w.mean(axis=(1, 2, 3), keepdims=True)
    grey = w.mean(axis=1, keepdims=True)
    total = (w ** 2).sum(axis=(1, 2, 3))
    colour = ((w - grey) ** 2).sum(axis=(1, 2, 3))
    return np.divide(colour, total, out=np.zeros_like(total), where=total > 0)


def kernel_tiles(kernels: np.ndarray, columns: int = 16, scale: int = 4, gap: int = 1) -> np.ndarray:
    """uint8 (H, W, 3) image of (K, 3, h, w) kernels, each min-max scaled on its own."""
    k, _, h, w = kernels.shape
    rows = -(-k // columns)
    out = np.full((rows * (h * scale + gap) + gap, columns * (w * scale + gap) + gap, 3), 255,
                  np.uint8)
    for i, kern in enumerate(np.asarray(kernels, dtype=np.float64)):
        lo, hi = kern.min(), kern.max()
        tile = (kern - lo) / (hi - lo) if hi > lo else np.full_like(kern, 0.5)
        tile = np.repeat(np.repeat((255 * tile).round().astype(np.uint8).transpose(1, 2, 0),
                                   scale, 0), scale, 1)
        r, c = divmod(i, columns)
        y, x = gap + r * (h * scale + gap), gap + c * (w * scale + gap)
        out[y:y + h * scale, x:x + w * scale] = tile
    return out


def load_model(path):
    """(config, model in eval mode on the CPU) of a checkpoint (weights_only=True)."""
    from paper_alexnet import model as model_lib
    state = checkpoint.load(path)
    cfg = config.build(config.RunConfig, state["config"])
    model = model_lib.build(cfg.model, ("cpu",))
    model.load_state_dict(state["model"])
    return cfg, model.eval()


def conv1_kernels(model) -> dict[str, np.ndarray]:
    """{"tower_a": (48, 3, 11, 11), "tower_b": …} (one entry for one-tower layouts; "all" for the
    Figure 1 net)."""
    towers = getattr(model, "towers", None)
    if towers is None:
        return {"all": model.conv1.weight.detach().cpu().numpy()}
    names = ["tower_a", "tower_b"][:len(towers)]
    return {n: t.conv1.weight.detach().cpu().numpy() for n, t in zip(names, towers)}


def figure3(checkpoint_path, out_dir) -> dict:
    """conv1 kernels PNG (tower A above tower B) and the colour-specificity score per tower."""
    _, model = load_model(checkpoint_path)
    kernels = conv1_kernels(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts, scores = [], {}
    for name, k in kernels.items():
        scores[name] = float(colour_specificity(k).mean()) if k.shape[1] == 3 else None
        parts.append(kernel_tiles(k if k.shape[1] == 3 else np.repeat(k, 3, axis=1)))
        parts.append(np.full((6, parts[-1].shape[1], 3), 255, np.uint8))   # gap between towers
    Image.fromarray(np.concatenate(parts[:-1])).save(out_dir / "figure3_conv1.png")
    return {"png": "figure3_conv1.png", "scores": scores,
            "kernels": {n: int(k.shape[0]) for n, k in kernels.items()}}


def nearest(queries: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pure function: (distances, indices) (Q, k) of the k rows of `pool` nearest (Euclidean) to
    each row of `queries`, nearest first."""
    d2 = ((queries ** 2).sum(1)[:, None] - 2 * queries @ pool.T + (pool ** 2).sum(1)[None, :])
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.sqrt(np.maximum(np.take_along_axis(d2, order, 1), 0.0)), order


def _hidden(model, images: torch.Tensor) -> torch.Tensor:
    """fc7 of AlexNet (§6.1); the last hidden layer (fc64) of the Figure 1 net."""
    return model.fc7(images) if hasattr(model, "fc7") else model.features(images)


def _features(model, data_root, split, cfg, limit: int | None):
    from paper_alexnet import data as data_lib
    feats, probs, idx = [], [], []
    seen = 0
    with torch.no_grad():
        for images, _labels, indices in data_lib.eval_batches(data_root, split, cfg, "center",
                                                              device=torch.device("cpu")):
            h = _hidden(model, images)
            feats.append(h.float().numpy())
            logits = model.fc8(h) if hasattr(model, "fc8") else model.fc10(h)
            probs.append(logits.float().softmax(1).numpy())
            idx.append(np.asarray(indices))
            seen += len(indices)
            if limit is not None and seen >= limit:
                break
    return np.concatenate(feats), np.concatenate(probs), np.concatenate(idx)


def figure4(checkpoint_path, data_root, out_dir, queries: int = 5, k: int = 6,
            max_train: int | None = 2000, max_val: int = 1000) -> dict:
    """Nearest training images in fc7 space for `queries` validation images spread evenly over
    the first `max_val` (so that a split sorted by class gives several classes)."""
    from data_prep.shards import PreparedSplit
    cfg, model = load_model(checkpoint_path)
    q_feat, q_prob, q_idx = _features(model, data_root, "val", cfg, max(queries, max_val))
    pick = np.unique(np.linspace(0, len(q_idx) - 1, min(queries, len(q_idx))).round().astype(int))
    q_feat, q_prob, q_idx = q_feat[pick], q_prob[pick], q_idx[pick]
    t_feat, _, t_idx = _features(model, data_root, "train", cfg, max_train)
    dist, order = nearest(q_feat, t_feat, k)
    val, train = PreparedSplit(Path(data_root) / "val"), PreparedSplit(Path(data_root) / "train")
    names = [name or wnid for wnid, name in val.classes]

    def tile(split, i, size=64):
        a = split.image(int(i))
        a = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a
        return np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR))
    rows, table = [], []
    for qi in range(len(q_idx)):
        row = [tile(val, q_idx[qi]), np.full((64, 6, 3), 255, np.uint8)]
        row += [tile(train, t_idx[j]) for j in order[qi]]
        rows.append(np.concatenate(row, axis=1))
        top5 = np.argsort(-q_prob[qi])[:5]
        table.append({"val_index": int(q_idx[qi]), "label": names[int(val.labels[q_idx[qi]])],
                      "top5": [(names[c], float(q_prob[qi][c])) for c in top5],
                      "neighbours": [(int(t_idx[j]), names[int(train.labels[t_idx[j]])],
                                      float(d)) for j, d in zip(order[qi], dist[qi])]})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(out_dir / "figure4_neighbours.png")
    return {"png": "figure4_neighbours.png", "rows": table, "train_searched": int(len(t_idx))}


def write_report(run_dir, data_root, out_dir=None, queries: int = 5, k: int = 6,
                 max_train: int | None = 2000) -> Path:
    """RUN/report/figures.md: Figures 3 and 4 of the run's final checkpoint."""
    from experiments import report
    from experiments.runner import final_checkpoint
    run_dir = Path(run_dir)
    out_dir = Path(out_dir or run_dir / "report")
    ckpt = final_checkpoint(run_dir)
    f3 = figure3(ckpt, out_dir)
    f4 = figure4(ckpt, data_root, out_dir, queries, k, max_train)
    if len(f3["scores"]) == 2:
        caption = ("Tower A's kernels above tower B's. Colour specificity = the share of a "
                   "kernel's energy that is not shared by R, G and B (0 = grey, 2/3 = one "
                   "channel, 1 = colour-opponent); the paper: tower A \"largely colour-agnostic\","
                   " tower B \"largely colour-specific\" (§6.1).")
    else:
        caption = ("The conv1 kernels of this one-tower network. Colour specificity = the share "
                   "of a kernel's energy that is not shared by R, G and B (0 = grey, 2/3 = one "
                   "channel, 1 = colour-opponent). The paper's contrast between its two towers' "
                   "kernels (§6.1) needs the two-tower net; there is none to draw here.")
    lines = ["# Figures 3 and 4 (§6.1)", "",
             f"Generated by `alexnet experiment figures` from `{ckpt.name}` of `{run_dir.name}` "
             f"and the data `{Path(str(data_root)).name}`; not edited by hand.", "",
             "## Figure 3: conv1 kernels", "",
             f"![conv1 kernels]({f3['png']})", "",
             caption, "",
             report.table(["tower", "kernels", "mean colour specificity"],
                          [[n, f3["kernels"][n], report.num(s, 3)]
                           for n, s in f3["scores"].items()]), "",
             "## Figure 4: nearest training images in fc7 space", "",
             f"![neighbours]({f4['png']})", "",
             f"Each row: a validation image, then its {k} nearest training images (Euclidean "
             "distance between fc7 activations — fc64 for the Figure 1 net —, centre view; "
             f"{f4['train_searched']} training images searched).", ""]
    rows = [[r["val_index"], r["label"],
             "; ".join(f"{n} {100 * p:.1f}%" for n, p in r["top5"]),
             "; ".join(f"{n} ({d:.1f})" for _, n, d in r["neighbours"])] for r in f4["rows"]]
    lines.append(report.table(["val image", "label", "top-5 predictions",
                               "neighbours (distance)"], rows))
    path = out_dir / "figures.md"
    path.write_text("\n".join(lines) + "\n")
    return path
