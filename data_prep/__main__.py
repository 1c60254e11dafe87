"""`python -m data_prep <verb>` / `alexnet prep <verb>`: §2 preparation, done once.

Verbs: imagenet (raw ILSVRC -> ROOT/train, ROOT/val[, ROOT/test]), images (any class-folder
dataset -> the same, at native size or resized; data_prep.images), verify (re-check a split or a
ROOT), stats (compare ROOT's train statistics with Alex's), bench (prep throughput), synthetic,
cifar10, fashion-mnist (in data_prep.synthetic / data_prep.small, imported only when asked for).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from data_prep import exits

VERBS = {
    "imagenet": "raw ILSVRC-2012/2010 (official tars or folders) -> prepared ROOT",
    "images": "any class-folder dataset (train/<class>/*, val/ or test/) -> prepared ROOT",
    "verify": "re-check a prepared split or ROOT against its manifest; non-zero exit on mismatch",
    "stats": "print ROOT's mean/PCA next to Alex Krizhevsky's (data_prep/reference)",
    "bench": "prep throughput per core and scaling with workers, on generated ImageNet-like JPEGs",
    "synthetic": "generate a small ImageNet-shaped raw dataset (class folders or official tars)",
    "cifar10": "CIFAR-10 python batches -> prepared ROOT (raw uint8)",
    "fashion-mnist": "Fashion-MNIST idx files -> prepared ROOT (raw uint8)",
}


def usage() -> str:
    return "usage: alexnet prep <verb> [options]\n\n" + "\n".join(
        f"  {v:<14} {t}" for v, t in VERBS.items())


def summary(split: str, manifest: dict, path: str) -> str:
    """One readable line per prepared split: what was written, what was converted or left out."""
    c = manifest["prep"]["counts"]
    size = sum(s["bytes"] for s in manifest["shards"]) / 1e6
    more = "".join(f", {c[k]} {k}" for k in ("missing", "duplicate") if c.get(k))
    listed = c["converted"] + c["rejected"] + c["skipped"] + c.get("missing", 0) \
        + c.get("duplicate", 0)
    to = "RGB" if manifest["image_shape"][-1] == 3 else "grayscale"
    return (f"{split}: {manifest['count']:,} images of {manifest['num_classes']:,} classes in "
            f"{len(manifest['shards'])} shard(s), {size:,.1f} MB -> {path}; {c['converted']} "
            f"converted to {to}, {c['rejected']} rejected, {c['skipped']} skipped{more}"
            + (" (each listed in manifest.json)" if listed else "")
            + ("; mean image and RGB PCA in stats.npz" if manifest["prep"].get("stats") else ""))


def chunk_size(text: str) -> int:
    """--chunk-size: a chunk's per-pixel statistic sums are int32 (data_prep.stats)."""
    from data_prep.stats import INT32_IMAGES

    n = int(text)
    if not 1 <= n <= INT32_IMAGES:
        raise argparse.ArgumentTypeError(f"{text}: must be 1 to {INT32_IMAGES:,} images")
    return n


def jpeg_quality(text: str) -> int:
    """--quality: libjpeg clamps anything outside 1..100 without a word, so refuse it."""
    q = int(text)
    if not 1 <= q <= 100:
        raise argparse.ArgumentTypeError(f"{text}: must be 1 to 100")
    return q


def add_prep_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the verbs that run data_prep.pipeline (imagenet, images)."""
    from data_prep.anomalies import DEFAULT_MAX_PIXELS
    from data_prep.pipeline import QUALITY

    p.add_argument("--out", required=True, help="output ROOT (train/, val/, test/ inside)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (the "
                   "output does not depend on it; default: %(default)s, the CPUs here)")
    p.add_argument("--quality", type=jpeg_quality, default=QUALITY, help="JPEG quality of the stored "
                   "resized images (default: %(default)s, the author's; docs/data.md: size vs "
                   "PSNR)")
    p.add_argument("--chunk-size", type=chunk_size, default=1024, help="images per resumable "
                   "unit, 1 to 8,421,504 (the output does not depend on it; default: "
                   "%(default)s)")
    p.add_argument("--shard-mb", type=int, default=1024, help="target shard size in MiB "
                   "(default: %(default)s)")
    p.add_argument("--max-failures", type=int, default=0, help="rejected, skipped or missing "
                   "inputs accepted before prep fails (each is listed in the manifest; default: "
                   "%(default)s)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="decompression-bomb limit, in pixels; PIL's own limit follows it "
                   "(default: %(default)s)")
    p.add_argument("--exif-transpose", action="store_true", help="rotate images by their EXIF "
                   "orientation (default: keep stored pixels, like Alex's code)")


def prepare_splits(args, info: dict, params: dict, source: dict, splits) -> None:
    """Prepare `splits` of a discovered input in order; each later split is checked for files
    identical to those of the earlier ones."""
    from data_prep.pipeline import check_split, prepare_split

    for split in splits:  # written once: every split is checked before any is written
        check_split(os.path.join(args.out, split), info["splits"][split],
                    dict(params, stats=split == "train"), args.chunk_size)
    done = []
    for split in splits:
        out = os.path.join(args.out, split)
        m = prepare_split(out, info["splits"][split], info["classes"],
                          dict(params, stats=split == "train"), skipped=info["skipped"][split],
                          workers=args.workers, chunk_size=args.chunk_size,
                          max_failures=args.max_failures, label=split, compare_with=done,
                          source=dict(source, **({"folder": info["folders"][split]}
                                                 if "folders" in info else {})))
        done.append(out)
        print(summary(split, m, out))


def run_prep(verb: str, out: str, work, inputs=()) -> int:
    """work() with prep's errors as one line on stderr and exit status 1; a missing input
    ((flag, path) pairs), an unusable --out, or one inside an input, a prepared split or a run,
    is exit 2 before any work; SIGTERM or Ctrl-C stops it with exit 75 (its finished chunks are
    kept: the same command resumes)."""
    from data_prep.files import overlap_problem, paths_problem
    from data_prep.interrupt import Interrupted, stop_at_once

    def checked_work():
        problem = (paths_problem(inputs, out)
                   or overlap_problem(out, "--out", inputs, itself=("dataset",)))
        if problem:
            raise exits.UsageError(problem)
        with stop_at_once():
            work()
    return exits.run(f"alexnet prep {verb}", checked_work, hints={
        Interrupted: f"the finished chunks are kept: run the same command again to resume (exit "
                     f"status {exits.STOPPED})",
        OSError: "fix it and re-run the same command (finished work is kept)"})


def main_imagenet(argv) -> int:
    from data_prep.imagenet import discover
    from data_prep.resize import RESAMPLE

    p = argparse.ArgumentParser(prog="alexnet prep imagenet", description=VERBS["imagenet"])
    p.add_argument("--input", required=True, help="directory holding the official files or "
                   "train/ val/ folders")
    p.add_argument("--size", type=int, default=256, help="§2: shorter side and crop size "
                   "(default: %(default)s)")
    add_prep_options(p)
    p.add_argument("--val-labels", help="'<file name> <wnid>' lines, or one wnid per sorted val "
                   "file (default: the devkit's ground truth and data/meta.mat)")
    p.add_argument("--test-labels", help="the same, for the ILSVRC-2010 test images (default: "
                   "ILSVRC2010_test_ground_truth.txt in --input)")
    p.add_argument("--class-names", help="'<wnid> <words>' lines, used where the devkit's meta.mat "
                   "is absent (default: synset_words.txt or LOC_synset_mapping.txt in --input, "
                   "else the wnids)")
    p.add_argument("--splits", default="train,val,test", help="comma-separated splits to prepare, "
                   "those absent from the input skipped (default: %(default)s)")
    args = p.parse_args(argv)

    def work():
        info = discover(args.input, args.val_labels, args.test_labels, args.class_names)
        print(f"prep: {info['layout']} layout{' ILSVRC-%d' % info['year'] if info['year'] else ''}"
              f", {len(info['classes'])} classes, " + ", ".join(
                  f"{s} {len(v)} images" for s, v in info["splits"].items()), file=sys.stderr)
        params = dict(size=args.size, quality=args.quality, max_pixels=args.max_pixels,
                      exif_transpose=args.exif_transpose, shard_bytes=args.shard_mb << 20,
                      jpeg_subsampling="4:2:0", resample=RESAMPLE,
                      class_index="position of the wnid in the sorted train wnids")
        source = dict(layout=info["layout"], year=info["year"],
                      input=os.path.basename(os.path.abspath(args.input)))
        prepare_splits(args, info, params, source,
                       [s for s in args.splits.split(",") if s in info["splits"]])
    return run_prep("imagenet", args.out, work, [("--input", args.input)])


def main_images(argv) -> int:
    from data_prep import images
    from data_prep.resize import RESAMPLE

    p = argparse.ArgumentParser(prog="alexnet prep images", description=VERBS["images"])
    p.add_argument("--input", required=True, help=f"dataset folder: {images.LAYOUT}")
    p.add_argument("--size", type=int, help="shorter side to N, central NxN crop, stored as JPEG "
                   "(default: native size, all images the same size, stored as raw uint8)")
    add_prep_options(p)
    args = p.parse_args(argv)
    if args.size is not None and args.size < 1:
        p.error(f"--size {args.size}: must be a positive number of pixels")

    def work():
        info = images.discover(args.input)
        geo = images.geometry(args.input, info["splits"], args.size is None, args.exif_transpose,
                              args.workers)
        shape = geo.get("image_shape") or [args.size, args.size, geo["channels"]]
        print(f"prep: class folders, {len(info['classes'])} classes, " + ", ".join(
            f"{s} ({info['folders'][s]}) {len(v)} images" for s, v in info["splits"].items())
            + f"; stored {'x'.join(map(str, shape))} "
            + ("raw (native size)" if args.size is None else "JPEG"), file=sys.stderr)
        params = dict(size=args.size, channels=geo["channels"], max_pixels=args.max_pixels,
                      exif_transpose=args.exif_transpose, shard_bytes=args.shard_mb << 20,
                      class_index="position of the class folder in the sorted train folders")
        if args.size is None:
            params.update(image_shape=shape)
        else:
            params.update(quality=args.quality, jpeg_subsampling="4:2:0", resample=RESAMPLE)
        source = dict(layout="class folders", input=os.path.basename(os.path.abspath(args.input)))
        prepare_splits(args, info, params, source, [s for s in ("train", "val", "test")
                                                    if s in info["splits"]])
    return run_prep("images", args.out, work, [("--input", args.input)])


def main_verify(argv) -> int:
    from data_prep.verify import verify

    p = argparse.ArgumentParser(prog="alexnet prep verify", description=VERBS["verify"])
    p.add_argument("path", help="a split directory or a ROOT holding train/ val/ test/")
    p.add_argument("--decode", action="store_true", help="also decode every record")
    args = p.parse_args(argv)
    bad = 0
    for split, problems in verify(args.path, args.decode).items():
        print(f"{split}: {'OK' if not problems else 'FAILED'}")
        for problem in problems:
            print(f"  {problem}")
        bad += len(problems)
    return 1 if bad else 0


def stats_table(ours: dict, cmp: dict) -> str:
    """data_prep.stats.compare's numbers as a table: ours beside Alex Krizhevsky's reference,
    principal components largest first."""
    order = list(reversed(range(len(cmp["pca_stdevs"]))))
    rows = [(f"mean {c} (0-255)", a, b) for c, a, b in
            zip("RGB", cmp["channel_mean"], cmp["reference_channel_mean"])]
    rows += [(f"PCA sqrt(eigval) {k + 1}", cmp["pca_stdevs"][i], cmp["reference_pca_stdevs"][i])
             for k, i in enumerate(order)]
    rows += [(f"|cos| to his eigvec {k + 1}", cmp["eigvec_abs_cosine"][i], None)
             for k, i in enumerate(order)]
    if "mean_image_rms_difference" in cmp:
        rows.append(("mean image RMS diff", cmp["mean_image_rms_difference"], None))
    ours_head = f"ours ({int(ours['images']):,} images)"
    lines = [f"{'':<24}{ours_head:>24}   Alex Krizhevsky (ILSVRC-2012 train)"]
    lines += [f"{name:<24}{a:>24.3f}" + ("" if b is None else f"{b:>12.3f}")
              for name, a, b in rows]
    lines += ["His values: cuda-convnet2's mean image and RGB PCA (data_prep/reference/README.md).",
              "PCA components largest first; |cos| = 1: the same direction."]
    return "\n".join(lines)


def main_stats(argv) -> int:
    from data_prep import stats

    p = argparse.ArgumentParser(prog="alexnet prep stats", description=VERBS["stats"])
    p.add_argument("root", help="prepared ROOT (or its train/ directory)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a "
                   "table")
    args = p.parse_args(argv)
    loaded = {}
    code = exits.run("alexnet prep stats", lambda: loaded.update(ours=stats.load(args.root)))
    if code != exits.DONE:
        return code
    ours = loaded["ours"]
    other = not_ilsvrc(args.root)
    if other:   # Alex's numbers are ILSVRC-2012's: beside CIFAR-10's they would mean nothing
        import numpy as np
        alone = dict(channel_mean=ours["mean"].mean(axis=(0, 1)).tolist(),
                     pca_stdevs=np.sqrt(np.maximum(ours["eigval"], 0)).tolist(),
                     images=int(ours["images"]), reference=None)
        print(json.dumps(alone, indent=1) if args.json else stats_alone(alone, other))
        return 0
    cmp = stats.compare(ours, stats.load_reference())
    print(json.dumps(cmp, indent=1) if args.json else stats_table(ours, cmp))
    return 0


def not_ilsvrc(root: str) -> str | None:
    """What ROOT's train split holds when it was not prepared from ILSVRC by `prep imagenet`
    ("50,000 images from cifar10"), else None (then Alex's statistics are its reference)."""
    from data_prep.shards import made_from

    for folder in (os.path.join(root, "train"), root):
        path = os.path.join(folder, "manifest.json")
        if os.path.isfile(path):
            with open(path) as f:
                manifest = json.load(f)
            source = manifest.get("prep", {}).get("source")
            return None if isinstance(source, dict) and "year" in source else made_from(manifest)
    return None


def stats_alone(numbers: dict, held: str) -> str:
    """ROOT's statistics without a reference: Alex's are of ILSVRC-2012 train only."""
    order = list(reversed(range(len(numbers["pca_stdevs"]))))
    rows = [(f"mean {c} (0-255)", v) for c, v in
            zip("RGB" if len(numbers["channel_mean"]) == 3 else "Y", numbers["channel_mean"])]
    rows += [(f"PCA sqrt(eigval) {k + 1}", numbers["pca_stdevs"][i]) for k, i in enumerate(order)]
    head = f"ours ({numbers['images']:,} images)"
    return "\n".join([f"{'':<24}{head:>24}"] + [f"{n:<24}{v:>24.3f}" for n, v in rows] + [
        f"Not compared with Alex Krizhevsky's statistics: his are of ILSVRC-2012 train, this ROOT "
        f"holds {held} (prepared by another verb than 'alexnet prep imagenet')."])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb == "imagenet":
        return main_imagenet(rest)
    elif verb == "images":
        return main_images(rest)
    elif verb == "verify":
        return main_verify(rest)
    elif verb == "stats":
        return main_stats(rest)
    elif verb == "bench":
        from data_prep import bench
        return bench.main(rest)
    elif verb == "synthetic":
        from data_prep import synthetic
        return int(synthetic.main(rest) or 0)
    elif verb == "cifar10":
        from data_prep import small
        return int(small.main_cifar10(rest) or 0)
    elif verb == "fashion-mnist":
        from data_prep import small
        return int(small.main_fashion_mnist(rest) or 0)
    else:
        print(f"alexnet prep: unknown verb {verb!r}\n\n{usage()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
