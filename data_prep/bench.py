"""`alexnet prep bench`: how fast §2 preparation runs, and what the stored JPEG quality costs.

On real images (`--input DIR`: the first `--images` files of DIR in name order) or on generated
ImageNet-like JPEGs (500×375, quality 90; colour noise with the 1/f amplitude spectrum of
photographs, whose file sizes come out close to ILSVRC's ~110 kB), it measures, each as the median
of `--repeats` runs:
- a plain PIL loop (open the file, RGB, resize shorter side 256 with PIL's BOX, centre crop,
  encode at the stored quality) on one core, as a point of reference (its filter is not the
  author's); wall rates suffer from other load on the machine, CPU time per image much less: both
  are shown;
- `pipeline.prepare_image` (the same with the author's filters, area average when shrinking and
  cubic when enlarging, plus the anomaly checks and the statistics pass) on one core;
- the whole `prepare_split` (chunks, files, digests, merge, manifest) with 1..N worker processes,
  and its ratio to the plain loop in the same run (per core: CPU time per image);
- the area resize against PIL's BOX and the cubic one against PIL's BICUBIC (what prep used
  before): PSNR of the two 256×256 crops;
- stored size and PSNR of the 256×256 image at JPEG quality 75/85/90/95 (vs the exact crop);
- Image.draft() (JPEG DCT-domain downscaling): speed and PSNR vs the exact path, on large images.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import resource
import statistics
import sys
import tempfile
import time

import numpy as np
import PIL
from PIL import Image

from data_prep import pipeline
from data_prep.pipeline import QUALITY
from data_prep.resize import resize_center_crop, target_size


def natural_like(rng, width=500, height=375) -> np.ndarray:
    """Colour noise with a 1/f amplitude spectrum, like photographs, scaled to 0..255."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(width, height))
    mix = np.array([[1.0, 0.9, 0.8], [0.0, 0.4, 0.3], [0.0, 0.0, 0.4]])  # correlated channels
    planes = []
    for _ in range(3):
        phase = np.exp(2j * np.pi * rng.random(amp.shape))
        planes.append(np.fft.irfft2(amp * phase, s=(height, width)))
    x = np.stack(planes, axis=-1) @ mix
    x = (x - x.mean()) / x.std() * 50 + 115
    return np.clip(x, 0, 255).astype(np.uint8)


def jpeg_bytes(arr: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def plain_pil(path: str) -> bytes:
    im = Image.open(path).convert("RGB")
    w, h = target_size(*im.size)
    im = im.resize((w, h), Image.BOX)
    left, top = (w - 256) // 2, (h - 256) // 2
    out = io.BytesIO()
    im.crop((left, top, left + 256, top + 256)).save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def pil_crop(im: Image.Image, resample) -> Image.Image:
    """What prep stored before the author's filters: PIL's BOX (shrinking) or BICUBIC
    (enlarging) to the §2 size, then the crop."""
    w, h = target_size(*im.size)
    left, top = (w - 256) // 2, (h - 256) // 2
    return im.resize((w, h), resample).crop((left, top, left + 256, top + 256))


def input_files(args, folder: str) -> tuple[list[str], str]:
    """(paths, words): --input's first --images image files, or generated JPEGs written to
    folder."""
    if args.input:
        image = tuple(Image.registered_extensions())  # .jpeg, .png, ...: not README.md
        names = sorted(n for n in os.listdir(args.input)
                       if not n.startswith(".") and n.lower().endswith(image))
        paths = [os.path.join(args.input, n) for n in names[:args.images or None]]
        return paths, f"{len(paths)} files of {os.path.basename(os.path.abspath(args.input))}"
    rng = np.random.default_rng(0)
    paths = []
    for i in range(args.images):
        paths.append(os.path.join(folder, f"img_{i:05d}.JPEG"))
        with open(paths[-1], "wb") as f:
            f.write(jpeg_bytes(natural_like(rng)))
    return paths, f"{len(paths)} generated 500x375 q90 JPEGs"


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def draft_path(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.draft("RGB", target_size(*im.size))  # DCT scaling by 1/2, 1/4, 1/8, never below target
    return resize_center_crop(im.convert("RGB"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="alexnet prep bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", help="a folder of real images (default: generated JPEGs)")
    p.add_argument("--images", type=int, default=200, help="how many (with --input: the first "
                   "N in name order; 0 = all) (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each measurement; the median "
                   "is shown (default: %(default)s)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts for the "
                   "scaling run (default: %(default)s)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "raw"))
        paths, words = input_files(args, os.path.join(tmp, "raw"))
        report(args, paths, words, tmp)
    sys.stdout.flush()
    return 0


def _one_core(args, paths, files, params) -> tuple[float, float]:
    """One core: the plain PIL loop, then prepare_image; (wall s, CPU s) of the plain loop."""
    n = len(files)
    print("\n| one core | images/s (wall) | CPU ms/image | images/s per CPU-second |"
          "\n|---|---|---|---|")
    plain = None
    for label, fn, inputs in (("plain PIL open/resize/crop/encode", plain_pil, paths),
                              ("data_prep.pipeline.prepare_image (+checks, +stats decode)",
                               lambda f: pipeline.prepare_image(f, "x.JPEG", params), files)):
        cpu = []

        def run(fn=fn, inputs=inputs):
            c0 = time.process_time()
            for f in inputs:
                fn(f)
            cpu.append(time.process_time() - c0)
        t = timed(run, args.repeats)
        c = statistics.median(cpu)
        plain = plain or (t, c)
        print(f"| {label} | {n / t:.0f} | {1e3 * c / n:.2f} | {n / c:.0f} |")
    return plain


def _whole_split(args, paths, params, tmp) -> tuple[float, float]:
    """prepare_split with each --workers count; (wall s, CPU s) with the first count."""
    n = len(paths)
    items = [(os.path.basename(path), i % 2, (path, 0, -1)) for i, path in enumerate(paths)]
    print("\n| prepare_split (whole split, files + merge) | images/s (wall) | speed-up | "
          "CPU ms/image, all processes |\n|---|---|---|---|")
    base = None
    for w in [int(x) for x in args.workers.split(",")]:
        cpu = []

        def run(w=w):
            out = tempfile.mkdtemp(dir=tmp)
            c0 = cpu_seconds()
            pipeline.prepare_split(out, items, [("a", "a"), ("b", "b")], params, workers=w,
                                   chunk_size=max(8, n // (4 * w)), label=f"{w} workers",
                                   max_failures=n)
            cpu.append(cpu_seconds() - c0)
        t = timed(run, args.repeats)
        c = statistics.median(cpu)
        base = base or (t, c)
        print(f"| {w} worker(s) | {n / t:.0f} | {base[0] / t:.2f}x | {1e3 * c / n:.2f} |")
    return base


def _resize_against_pil(files) -> list:
    """PSNR of our area / cubic resize against PIL's filters; the exact 256x256 crops."""
    crops, box_psnr, bicubic_psnr = [], [], []
    for f in files:
        im = Image.open(io.BytesIO(f)).convert("RGB")
        crops.append(resize_center_crop(im))
        if min(im.size) != 256:  # area against BOX when shrunk, cubic against BICUBIC enlarged
            shrunk = min(im.size) > 256
            pil = pil_crop(im, Image.BOX if shrunk else Image.BICUBIC)
            (box_psnr if shrunk else bicubic_psnr).append(psnr(np.asarray(crops[-1]),
                                                               np.asarray(pil)))
    for words, ps in (("area resize against PIL's BOX", box_psnr),
                      ("cubic (a = -0.75) against PIL's BICUBIC (a = -0.5)", bicubic_psnr)):
        if ps:
            print(f"\n{words} (what prep used before), 256x256 crops of the {len(ps)} "
                  f"{'shrunk' if ps is box_psnr else 'enlarged'} images: PSNR mean "
                  f"{np.mean(ps):.2f} dB, median {np.median(ps):.2f}, min {np.min(ps):.2f}")
    return crops


def _stored_quality(crops) -> None:
    print("\n| stored quality | mean kB / 256x256 image | PSNR dB vs exact crop |\n|---|---|---|")
    for q in (75, 85, 90, 95):
        sizes, ps = [], []
        for c in crops:
            b = pipeline.encode_jpeg(c, q)
            sizes.append(len(b))
            ps.append(psnr(np.asarray(c), np.asarray(Image.open(io.BytesIO(b)))))
        print(f"| {q} | {np.mean(sizes) / 1e3:.1f} | {np.mean(ps):.2f} |")


def _draft(args, n: int) -> None:
    """JPEG draft-mode decoding against exact decoding, on generated photos of three sizes."""
    print("\n| draft() on | exact ms | draft ms | PSNR dB draft vs exact |\n|---|---|---|---|")
    rng = np.random.default_rng(1)
    for w, h in ((500, 375), (1024, 768), (2048, 1536)):
        big = [jpeg_bytes(natural_like(rng, w, h)) for _ in range(max(4, n // 20))]
        exact = lambda: [resize_center_crop(Image.open(io.BytesIO(b)).convert("RGB"))
                         for b in big]
        t_e = timed(exact, args.repeats)
        t_d = timed(lambda: [draft_path(b) for b in big], args.repeats)
        ps = [psnr(np.asarray(a), np.asarray(b)) for a, b in zip(exact(), map(draft_path, big))]
        print(f"| {w}x{h} | {1e3 * t_e / len(big):.1f} | {1e3 * t_d / len(big):.1f} | "
              f"{np.mean(ps):.1f} |")


def report(args, paths: list[str], words: str, tmp: str) -> None:
    files = []
    for path in paths:
        with open(path, "rb") as f:
            files.append(f.read())
    n = len(files)
    print(f"# prep bench: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, Pillow {PIL.__version__}, numpy {np.__version__}; "
          f"{words} (mean {np.mean([len(f) for f in files]) / 1e3:.0f} kB), median of "
          f"{args.repeats}")
    params = dict(size=256, quality=QUALITY, max_pixels=10**8, exif_transpose=False, stats=True,
                  shard_bytes=1 << 30)
    plain = _one_core(args, paths, files, params)
    base = _whole_split(args, paths, params, tmp)
    print(f"\nwhole split with 1 worker against the plain PIL loop, same files, same run: "
          f"{plain[1] / base[1]:.2f}x per CPU-second ({1e3 * plain[1] / n:.2f} vs "
          f"{1e3 * base[1] / n:.2f} ms of CPU per image), {plain[0] / base[0]:.2f}x wall")
    _stored_quality(_resize_against_pil(files))
    _draft(args, n)
