"""The input pipeline measured (`loader_benchmark`): the training loader's images/s per backend and
worker count, against a plain PIL loop over the same images and the CPU JPEG decoders alone
(docs/pipeline.md). Beside the bench it serves (experiments/bench.py, bench_measure.py), not in the
runtime pipeline.
"""
from __future__ import annotations

import dataclasses
import io
import time

import numpy as np
import torch
from PIL import Image

from paper_alexnet import data as data_lib


def loader_benchmark(root, cfg, workers=(0, 1, 2), batches: int = 20, device="cpu",
                     backends=("cpu",)) -> dict:
    """Training-loader throughput (images/s) for each worker count and backend, against a plain
    single-process PIL decode + crop + flip loop over the same images, and the two CPU JPEG
    decoders (PIL, torchvision) alone. The first batch of each run (worker start-up) is not
    timed. The root needs (batches + 1) * optim.batch_size training images."""
    results = {"runs": []}
    for backend in backends:
        for w in workers:
            c = dataclasses.replace(
                cfg, data=dataclasses.replace(cfg.data, workers=w, backend=backend),
                train=dataclasses.replace(cfg.train, steps_per_epoch=batches + 1))
            it = data_lib.train_batches(root, c, epoch=0, device=device)
            next(it)
            start, count = time.perf_counter(), 0
            for x, _ in it:
                count += len(x)
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            rate = count / (time.perf_counter() - start)
            results["runs"].append(dict(backend=backend, workers=w, images_per_s=rate,
                                        per_worker=rate / max(w, 1)))
    data, indices = data_lib.split_indices(root, "train", cfg)
    sample = data_lib.epoch_order(cfg.train.seed, 0, indices)[:batches * cfg.optim.batch_size]
    size, rng = cfg.model.input_size, np.random.default_rng(0)
    start = time.perf_counter()
    for i in sample:
        with Image.open(io.BytesIO(data.read(i))) as im:
            a = np.asarray(im.convert("RGB"))
        y, x = rng.integers(0, a.shape[0] - size + 1, 2)
        crop = a[y:y + size, x:x + size]
        np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop)
    results["plain_pil_loop"] = len(sample) / (time.perf_counter() - start)
    if data.encoding == "jpeg":
        blobs = [data.read(i) for i in sample[:500]]
        start = time.perf_counter()
        for b in blobs:
            with Image.open(io.BytesIO(b)) as im:
                np.asarray(im.convert("RGB"))
        results["decode_pil"] = len(blobs) / (time.perf_counter() - start)
        start = time.perf_counter()
        for b in blobs:
            data_lib.decode_jpegs([b], "cpu", 3)
        results["decode_torchvision_cpu"] = len(blobs) / (time.perf_counter() - start)
    return results
