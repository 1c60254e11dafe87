"""`alexnet prep bench`: how fast §2 preparation runs, and what the stored JPEG quality costs.

On generated ImageNet-like JPEGs (500×375, quality 90; colour noise with the 1/f amplitude spectrum
of photographs, whose file sizes come out close to ILSVRC's ~110 kB), it measures, each as the
median of `--repeats` runs:
- a plain PIL loop (open, RGB, resize shorter side 256, centre crop, encode q90) on one core;
  wall rates suffer from other load on the machine, CPU time per image much less: both are shown;
- `pipeline.prepare_image` (the same plus the anomaly checks and the statistics pass) on one core;
- the whole `prepare_split` (chunks, files, merge, manifest) with 1..N worker processes;
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


def plain_pil(data: bytes) -> bytes:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = target_size(*im.size)
    im = im.resize((w, h), Image.BOX)
    left, top = (w - 256) // 2, (h - 256) // 2
    out = io.BytesIO()
    im.crop((left, top, left + 256, top + 256)).save(out, "JPEG", quality=90)
    return out.getvalue()


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
    p.add_argument("--images", type=int, default=200, help="generated JPEGs per measurement "
                   "(default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each measurement; the median "
                   "is shown (default: %(default)s)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts for the "
                   "scaling run (default: %(default)s)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    pixels = [natural_like(rng) for _ in range(args.images)]
    files = [jpeg_bytes(a) for a in pixels]
    print(f"# prep bench: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, Pillow {PIL.__version__}, numpy {np.__version__}; "
          f"{args.images} generated 500x375 q90 JPEGs "
          f"(mean {np.mean([len(f) for f in files]) / 1e3:.0f} kB), median of {args.repeats}")
    params = dict(size=256, quality=90, max_pixels=10**8, exif_transpose=False, stats=True,
                  shard_bytes=1 << 30)
    n = args.images
    print("\n| one core | images/s (wall) | CPU ms/image | images/s per CPU-second |"
          "\n|---|---|---|---|")
    for label, fn in (("plain PIL open/resize/crop/encode", lambda f: plain_pil(f)),
                      ("data_prep.pipeline.prepare_image (+checks, +stats decode)",
                       lambda f: pipeline.prepare_image(f, "x.JPEG", params))):
        cpu = []

        def run(fn=fn):
            c0 = time.process_time()
            for f in files:
                fn(f)
            cpu.append(time.process_time() - c0)
        t = timed(run, args.repeats)
        c = statistics.median(cpu)
        print(f"| {label} | {n / t:.0f} | {1e3 * c / n:.2f} | {n / c:.0f} |")
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "raw"))
        items = []
        for i, f in enumerate(files):
            path = os.path.join(tmp, "raw", f"img_{i:05d}.JPEG")
            with open(path, "wb") as fh:
                fh.write(f)
            items.append((f"img_{i:05d}.JPEG", i % 2, (path, 0, -1)))
        print("\n| prepare_split (whole split, files + merge) | images/s (wall) | speed-up | "
              "CPU ms/image, all processes |\n|---|---|---|---|")
        base = None
        for w in [int(x) for x in args.workers.split(",")]:
            cpu = []

            def run(w=w):
                out = tempfile.mkdtemp(dir=tmp)
                c0 = cpu_seconds()
                pipeline.prepare_split(out, items, [("a", "a"), ("b", "b")], params, workers=w,
                                       chunk_size=max(8, n // (4 * w)), label=f"{w} workers")
                cpu.append(cpu_seconds() - c0)
            t = timed(run, args.repeats)
            base = base or t
            print(f"| {w} worker(s) | {n / t:.0f} | {base / t:.2f}x | "
                  f"{1e3 * statistics.median(cpu) / n:.2f} |")
    print("\n| stored quality | mean kB / 256x256 image | PSNR dB vs exact crop |\n|---|---|---|")
    crops = [resize_center_crop(Image.open(io.BytesIO(f)).convert("RGB")) for f in files]
    for q in (75, 85, 90, 95):
        sizes, ps = [], []
        for c in crops:
            b = pipeline.encode_jpeg(c, q)
            sizes.append(len(b))
            ps.append(psnr(np.asarray(c), np.asarray(Image.open(io.BytesIO(b)))))
        print(f"| {q} | {np.mean(sizes) / 1e3:.1f} | {np.mean(ps):.2f} |")
    print("\n| draft() on | exact ms | draft ms | PSNR dB draft vs exact |\n|---|---|---|---|")
    for w, h in ((500, 375), (1024, 768), (2048, 1536)):
        big = [jpeg_bytes(natural_like(rng, w, h)) for _ in range(max(4, n // 20))]
        exact = lambda: [resize_center_crop(Image.open(io.BytesIO(b)).convert("RGB")) for b in big]
        t_e = timed(exact, args.repeats)
        t_d = timed(lambda: [draft_path(b) for b in big], args.repeats)
        ps = [psnr(np.asarray(a), np.asarray(b)) for a, b in zip(exact(), map(draft_path, big))]
        print(f"| {w}x{h} | {1e3 * t_e / len(big):.1f} | {1e3 * t_d / len(big):.1f} | "
              f"{np.mean(ps):.1f} |")
    sys.stdout.flush()
    return 0
