"""§6.1, Figures 3 and 4: what the trained network learned.

Figure 3: the conv1 kernels as an image, tower A's 48 above tower B's 48, each kernel scaled to the
full 0-255 range on its own (as the paper's figure does). The paper says tower A's kernels are
"largely colour-agnostic" and tower B's "largely colour-specific" (which tower is which is a
matter of numbering); we MEASURE that with a colour-specificity score per kernel w (3 x h x w,
P = h*w pixels), compared with the same score of the run's initial weights:

    g_p  = (w_Rp + w_Gp + w_Bp) / 3              the grey part of pixel p (the same on R, G, B)
    q_p  = the 2 chroma coordinates of w_p − g_p  (an orthonormal basis of the plane ⟂ (1,1,1))
    c    = Σ_p |q_p|² / Σ w²                      chroma share of the kernel's energy
    M    = Σ_p q_p q_pᵀ (2x2), μ1 ≥ μ2 its eigenvalues
    r    = (μ1 − μ2) / (μ1 + μ2)                  1 when all the chroma lies on one hue axis
    κ_P  = E[r] for i.i.d. Gaussian weights = m·Γ(3/2)·Γ(m) / Γ(m + 3/2), m = (P − 1)/2
    score = c · (r − κ_P) / (1 − κ_P)

A kernel that is one colour u times one spatial pattern scores the chroma share of u: 0 for grey
(u = (1,1,1)), 2/3 for one channel only (a red-only kernel still responds to brightness: a third
of its energy is grey), 1 for an opponent pair (R = −G). Random i.i.d. Gaussian kernels (the
§5 initialisation) score 0 on average, exactly: their chroma is isotropic, so r is κ_P on
average, and r is independent of c (for 11x11 kernels κ = 0.114; single scores spread ±0.05).
The older "share of energy that is not grey" (c alone) gives random and one-channel kernels the
same 2/3; the r factor is what tells one hue axis from noise.

Figure 4: for a few validation images, the training images whose fc7 activations (4096 units, eval
mode, centre crop) are nearest by Euclidean distance, and the network's top-5 predictions.
Queries and searched training images are spread evenly over their splits, which prepared
class-folder splits store class by class. PNGs are made with PIL (no matplotlib needed); labels
and distances go into the markdown table.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from experiments import report
from paper_alexnet.run import checkpoint

# the chroma plane: an orthonormal basis of the RGB directions orthogonal to grey (1, 1, 1)
CHROMA = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]]).T / np.array([math.sqrt(2), math.sqrt(6)])


def noise_anisotropy(pixels: int) -> float:
    """κ_P: the mean of r (the module docstring) over i.i.d. Gaussian kernels of `pixels` pixels.
    M is then a 2x2 Wishart matrix with P degrees of freedom: r² ~ Beta(1, (P − 1)/2)."""
    m = (pixels - 1) / 2
    return math.exp(math.log(m) + math.lgamma(1.5) + math.lgamma(m) - math.lgamma(m + 1.5))


def colour_specificity(kernels: np.ndarray) -> np.ndarray:
    """Pure function: kernels (K, 3, h, w) -> scores (K,) (the module docstring): 0 for grey
    kernels, 0 on average for random ones, 2/3 for one channel, 1 for an opponent pair."""
    w = np.asarray(kernels, dtype=np.float64)
    if w.ndim != 4 or w.shape[1] != 3 or w.shape[2] * w.shape[3] < 2:
        raise ValueError(f"colour_specificity: expected (K, 3, h, w) kernels, got {w.shape}")
    x = w.reshape(len(w), 3, -1)
    q = np.einsum("kcp,cd->kdp", x, CHROMA)           # chroma coordinates of every pixel
    m = np.einsum("kdp,kep->kde", q, q)
    chroma = m[:, 0, 0] + m[:, 1, 1]
    spread = np.sqrt((m[:, 0, 0] - m[:, 1, 1]) ** 2 + 4 * m[:, 0, 1] ** 2)     # μ1 − μ2
    total = (x ** 2).sum(axis=(1, 2))
    c = np.divide(chroma, total, out=np.zeros_like(total), where=total > 0)
    r = np.divide(spread, chroma, out=np.zeros_like(chroma), where=chroma > 0)
    kappa = noise_anisotropy(x.shape[2])
    return c * (r - kappa) / (1 - kappa) + 0.0         # + 0.0: no "-0.000" for grey kernels


def distribution(scores: np.ndarray) -> dict:
    """{"kernels", "mean", "q1", "median", "q3"} of a tower's scores."""
    q1, median, q3 = np.percentile(scores, [25, 50, 75])
    return {"kernels": int(len(scores)), "mean": float(np.mean(scores)), "q1": float(q1),
            "median": float(median), "q3": float(q3)}


def mean_difference_p(a: np.ndarray, b: np.ndarray, permutations: int = 10000,
                      seed: int = 0) -> float:
    """Two-sided permutation p-value of mean(a) − mean(b): how often kernels dealt to the two
    towers at random differ by at least as much."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    both = np.concatenate([a, b])
    observed = abs(a.mean() - b.mean())
    dealt = np.random.default_rng(seed).permuted(np.tile(both, (permutations, 1)), axis=1)
    diffs = np.abs(dealt[:, :len(a)].mean(1) - dealt[:, len(a):].mean(1))
    return float((np.sum(diffs >= observed - 1e-12) + 1) / (permutations + 1))


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


def initial_model(cfg):
    """The run's network before its first step, exactly: training seeds torch with train.seed and
    builds the model, which initialises its weights on the CPU before placing it (resume.start)."""
    from paper_alexnet import model as model_lib
    torch.manual_seed(cfg.train.seed)
    return model_lib.build(cfg.model, ("cpu",)).eval()


def conv1_kernels(model) -> dict[str, np.ndarray]:
    """{"tower_a": (48, 3, 11, 11), "tower_b": …} (one entry for one-tower layouts; "all" for the
    Figure 1 net)."""
    towers = getattr(model, "towers", None)
    if towers is None:
        return {"all": model.conv1.weight.detach().cpu().numpy()}
    names = ["tower_a", "tower_b"][:len(towers)]
    return {n: t.conv1.weight.detach().cpu().numpy() for n, t in zip(names, towers)}


def strip_plot(rows: list[tuple[str, np.ndarray]], lo: float = -0.2, hi: float = 1.0,
               width: int = 640, row_height: int = 28) -> np.ndarray:
    """uint8 image: one row per (label, scores), a dot per kernel on a lo..hi axis, a bar at the
    median, ticks every 0.2 (PIL only)."""
    left, top = 150, 6
    height = top + row_height * len(rows) + 22
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    x_of = lambda v: left + (min(max(v, lo), hi) - lo) / (hi - lo) * (width - left - 12)
    for t in np.arange(lo, hi + 1e-9, 0.2):
        x = x_of(t)
        draw.line([(x, top), (x, height - 20)], fill=(225, 225, 225))
        draw.text((x - 10, height - 16), f"{t:.1f}", fill="black")
    for i, (label, scores) in enumerate(rows):
        y = top + i * row_height + row_height // 2
        draw.text((4, y - 6), label, fill="black")
        for v in scores:
            x = x_of(float(v))
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], outline=(40, 70, 160))
        m = x_of(float(np.median(scores)))
        draw.line([(m, y - 9), (m, y + 9)], fill=(200, 30, 30), width=2)
    return np.asarray(img)


def figure3(checkpoint_path, out_dir) -> dict:
    """conv1 kernels PNG (tower A above tower B), the colour-specificity scores of each tower's
    kernels, trained and at initialisation (the run's config and seed), as numbers and a strip
    plot, and which tower is the more colour-specific."""
    cfg, model, _ = checkpoint.load_model(checkpoint_path, ("cpu",))
    kernels, initial = conv1_kernels(model), conv1_kernels(initial_model(cfg))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts, towers = [], {}
    for name, k in kernels.items():
        if k.shape[1] == 3:
            towers[name] = {"trained": colour_specificity(k),
                            "initial": colour_specificity(initial[name])}
        parts.append(kernel_tiles(k if k.shape[1] == 3 else np.repeat(k, 3, axis=1)))
        parts.append(np.full((6, parts[-1].shape[1], 3), 255, np.uint8))   # gap between towers
    Image.fromarray(np.concatenate(parts[:-1])).save(out_dir / "figure3_conv1.png")
    out = {"png": "figure3_conv1.png", "kernels": {n: int(k.shape[0]) for n, k in kernels.items()},
           "towers": {n: {when: distribution(v) for when, v in t.items()}
                      for n, t in towers.items()}}
    if towers:
        rows = [(f"{n} {when}", t[when]) for n, t in towers.items() for when in ("initial",
                                                                                  "trained")]
        Image.fromarray(strip_plot(rows)).save(out_dir / "figure3_colour.png")
        out["strip_png"] = "figure3_colour.png"
    if set(towers) == {"tower_a", "tower_b"}:
        a, b = towers["tower_a"]["trained"], towers["tower_b"]["trained"]
        out["more_specific"] = "tower_a" if a.mean() > b.mean() else "tower_b"
        out["p_value"] = mean_difference_p(a, b)
    return out


def figure3_text(f3: dict) -> list[str]:
    """The markdown of Figure 3: the kernels, the score's table and strip plot, the verdict."""
    two = set(f3["towers"]) == {"tower_a", "tower_b"}
    whose = ("Tower A's kernels above tower B's." if two else
             "The conv1 kernels of this one-tower network; the paper's contrast between its two "
             "towers' kernels (§6.1) needs the two-tower net.")
    lines = ["## Figure 3: conv1 kernels", "", f"![conv1 kernels]({f3['png']})", "",
             whose + " Colour specificity per kernel (docs/experiments.md, \"Colour "
             "specificity\"): 0 = grey (the same filter on R, G and B), and 0 on average for "
             "random kernels; 2/3 = one channel only; 1 = an opponent pair (R = −G). The paper: "
             "one tower \"largely colour-agnostic\", the other \"largely colour-specific\" "
             "(§6.1). \"initial\" is the same tower before training (the run's config and seed).",
             ""]
    rows = [[n, when, d["kernels"], report.num(d["mean"], 3), report.num(d["q1"], 3),
             report.num(d["median"], 3), report.num(d["q3"], 3)]
            for n, t in f3["towers"].items() for when, d in (("initial", t["initial"]),
                                                              ("trained", t["trained"]))]
    lines.append(report.table(["tower", "weights", "kernels", "mean", "25%", "median", "75%"],
                              rows))
    if "strip_png" in f3:
        lines += ["", f"![colour specificity per kernel]({f3['strip_png']})", "",
                  "One dot per kernel; the red bar is the median."]
    if "more_specific" in f3:
        t = f3["towers"]
        hi, lo = f3["more_specific"], ({"tower_a", "tower_b"} - {f3["more_specific"]}).pop()
        lines += ["", f"Trained, {hi}'s kernels are the more colour-specific: mean "
                  f"{t[hi]['trained']['mean']:.3f} against {t[lo]['trained']['mean']:.3f} "
                  f"({lo}), median {t[hi]['trained']['median']:.3f} against "
                  f"{t[lo]['trained']['median']:.3f}; two-sided permutation p = "
                  f"{f3['p_value']:.4f} for the difference of the means (10,000 random "
                  "deals of the 96 kernels to two towers)."]
    return lines


def nearest(queries: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pure function: (distances, indices) (Q, k) of the k rows of `pool` nearest (Euclidean) to
    each row of `queries`, nearest first."""
    d2 = ((queries ** 2).sum(1)[:, None] - 2 * queries @ pool.T + (pool ** 2).sum(1)[None, :])
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.sqrt(np.maximum(np.take_along_axis(d2, order, 1), 0.0)), order


def _hidden(model, images: torch.Tensor) -> torch.Tensor:
    """fc7 of AlexNet (§6.1); the last hidden layer (fc64) of the Figure 1 net."""
    if hasattr(model, "fc7_activations"):
        return model.fc7_activations(images)
    return model.features(images)


def _features(model, data_root, split, cfg, limit: int | None):
    """fc7 features, softmax and image indices of `limit` images spread evenly over `split` (all
    when None)."""
    from paper_alexnet import data as data_lib
    feats, probs, idx = [], [], []
    with torch.no_grad():
        for images, _labels, indices in data_lib.eval_batches(data_root, split, cfg, "center",
                                                              device=torch.device("cpu"),
                                                              limit=limit):
            h = _hidden(model, images)
            feats.append(h.float().numpy())
            logits = model.fc8(h) if hasattr(model, "fc8") else model.fc10(h)
            probs.append(logits.float().softmax(1).numpy())
            idx.append(np.asarray(indices))
    return np.concatenate(feats), np.concatenate(probs), np.concatenate(idx)


def figure4(checkpoint_path, data_root, out_dir, queries: int = 5, k: int = 6,
            max_train: int | None = 2000) -> dict:
    """Nearest training images in fc7 space for `queries` validation images; both the queries
    and the `max_train` training images searched (all when None) are spread evenly over their
    splits, so that a split stored class by class gives as many classes as it can."""
    from data_prep.shards import PreparedSplit
    cfg, model, _ = checkpoint.load_model(checkpoint_path, ("cpu",))
    q_feat, q_prob, q_idx = _features(model, data_root, "val", cfg, queries)
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
    return {"png": "figure4_neighbours.png", "rows": table, "train_searched": int(len(t_idx)),
            "train_images": len(train), "val_images": len(val), "classes": len(val.classes)}


def write_report(run_dir, data_root, out_dir=None, queries: int = 5, k: int = 6,
                 max_train: int | None = 2000, note: str = "") -> Path:
    """RUN/report/figures.md: Figures 3 and 4 of the run's final checkpoint."""
    from experiments.runner import final_checkpoint
    run_dir = Path(run_dir)
    out_dir = Path(out_dir or run_dir / "report")
    ckpt = final_checkpoint(run_dir)
    f3 = figure3(ckpt, out_dir)
    f4 = figure4(ckpt, data_root, out_dir, queries, k, max_train)
    lines = ["# Figures 3 and 4 (§6.1)", "",
             f"Generated by `alexnet experiment figures` from `{ckpt.name}` of `{run_dir.name}` "
             f"and the prepared data `{report.shown_path(data_root)}` ({f4['classes']} classes, "
             f"{f4['train_images']:,} training and {f4['val_images']:,} validation images); not "
             "edited by hand.", ""]
    if note:
        lines += [note, ""]
    lines += figure3_text(f3)
    lines += ["", "## Figure 4: nearest training images in fc7 space", "",
              f"![neighbours]({f4['png']})", "",
              f"Each row: a validation image, then its {k} nearest training images (Euclidean "
              "distance between fc7 activations — fc64 for the Figure 1 net —, centre view; "
              f"{f4['train_searched']:,} of the {f4['train_images']:,} training images searched, "
              "spread evenly over the split; the validation images too).", ""]
    rows = [[r["val_index"], r["label"],
             "; ".join(f"{n} {100 * p:.1f}%" for n, p in r["top5"]),
             "; ".join(f"{n} ({d:.1f})" for _, n, d in r["neighbours"])] for r in f4["rows"]]
    lines.append(report.table(["val image", "label", "top-5 predictions",
                               "neighbours (distance)"], rows))
    path = out_dir / "figures.md"
    path.write_text("\n".join(lines) + "\n")
    return path
