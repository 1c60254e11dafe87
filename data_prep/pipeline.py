"""§2 "done once": prepare one split with N processes, resumably and deterministically.

The sorted item list is cut into fixed-size chunks. Each chunk (decode → §2 resize/crop → JPEG
encode, plus the train statistics' integer sums) is written to OUT/.parts/chunk-XXXXXX.bin and
.npz, each via tmp + rename, the .npz last: a chunk is done iff its .npz exists. A killed run
(even SIGKILL) re-run with the same command redoes only the missing chunks. When all are done, the
chunks are copied in order into the shards (data_prep.shards.ShardWriter), stats.npz and finally
manifest.json are written, and .parts is removed. Output bytes depend only on the item list and
the parameters (and, through the float32 area resize, on the machine's BLAS kernels): 1 or N
workers, interrupted or not, give identical files. While merging, the parts and the shards
coexist: the split needs about twice its final size of free disk.

Each chunk also records, per input, its size and modification time when read (a resumed run
refuses to reuse a finished chunk whose inputs have changed since) and a 128-bit BLAKE2b digest of
its bytes: identical files under two names, in this split or in one given in `compare_with`, are
reported as "duplicate" anomalies (kept, not removed). The digests are stored in sources.npz.

Stored images: `params["size"]` N gives the §2 shorter-side-N resize and central N×N crop,
stored as JPEG (`prep imagenet`, `prep images --size N`); `params["size"]` None keeps each image
at its native size, which must be `params["image_shape"]`, stored as raw uint8 (`prep images`).
`params["channels"]` (default 3) is 1 for an all-grayscale dataset.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import zipfile

import numpy as np
from PIL import Image

from data_prep import blas, exits, sources, stats
from data_prep.anomalies import Rejected, decode
from data_prep.imagenet import read_source
from data_prep.interrupt import ignore_ctrl_c
from data_prep.progress import Progress
from data_prep.resize import resize_center_crop
from data_prep.files import npz_bytes, write_atomic
from data_prep.shards import STATS, ShardWriter, WrittenOnce, existing_split

PARTS = ".parts"
FAILURES = ("rejected", "skipped", "missing")  # anomaly kinds counted against --max-failures


# the author's stored quality: cuda-convnet2 make-data pyext.h `#define JPEG_QUALITY 95`, passed to
# cv::imencode in makeJPEG
QUALITY = 95


class PrepError(exits.Failure):
    """Preparation stopped; the message says why and what to do."""


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    # explicit 4:2:0 and no optimisation: the same bytes on every run (libjpeg is deterministic)
    image.save(buf, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False)
    return buf.getvalue()


def image_shape(params: dict) -> tuple[int, int, int]:
    """(H, W, C) of the stored images: size×size after the §2 resize and crop, or native."""
    if params["size"] is None:
        return tuple(params["image_shape"])
    return (params["size"], params["size"], params.get("channels", 3))


def prepare_image(data: bytes, name: str, params: dict) -> tuple[bytes, np.ndarray, list[str]]:
    """Raw bytes -> (stored bytes: JPEG, or raw H·W·C uint8 at native size; the pixels training
    will decode from them, or None when params["stats"] is false; notes)."""
    shape = image_shape(params)
    image, notes = decode(data, name, params["max_pixels"], params["exif_transpose"], shape[2])
    if params["size"] is None:
        if image.size != (shape[1], shape[0]):
            raise Rejected(f"{image.size[0]}x{image.size[1]} pixels, the split's images are "
                           f"{shape[1]}x{shape[0]} (did the file change since prep started?)")
        pixels = np.asarray(image).reshape(shape)
        return pixels.tobytes(), pixels, notes
    image = resize_center_crop(image, params["size"])
    jpeg = encode_jpeg(image, params["quality"])
    if not params.get("stats", True):
        return jpeg, None, notes
    return jpeg, decode_stored(jpeg, image.mode, image.size).reshape(shape), notes


def decode_stored(jpeg: bytes, mode: str, size: tuple[int, int]) -> np.ndarray:
    """The pixels training will decode from a JPEG we just encoded (statistics of what the
    network sees): libjpeg straight away, as Image.open(...).load() would decode it, without
    parsing the header in Python (we wrote it: its mode and size are known). The same pixels
    (tests/test_prep_resize_stats.py); 0.62 instead of 0.93 ms per 256×256 image with the
    conversion to numpy (docs/data.md)."""
    return np.asarray(Image.frombytes(mode, size, jpeg, "jpeg", mode, ""))


def chunk_path(parts: str, k: int, ext: str) -> str:
    return os.path.join(parts, f"chunk-{k:06d}.{ext}")


def process_chunk(job) -> int:
    """Worker: one chunk of (name, label, src) -> chunk-k.bin + chunk-k.npz. Returns #items."""
    parts, k, items, params = job
    blobs, lengths, labels, names, digests, anomalies, stamps = [], [], [], [], [], [], []
    acc = stats.empty(image_shape(params), np.int32)  # chunk_size <= stats.INT32_IMAGES
    with blas.one_thread():  # one process per core: BLAS threads would only spin
        for name, label, src in items:
            stamps.append(sources.stamp(src[0]))  # before reading: a later change is always seen
            data = read_source(src)
            try:
                stored, pixels, notes = prepare_image(data, name, params)
            except Rejected as e:
                anomalies.append(dict(name=name, kind="rejected", reason=str(e)))
                continue
            if notes:
                anomalies.append(dict(name=name, kind="converted", reason="; ".join(notes)))
            if params["stats"]:
                stats.accumulate(acc, pixels)
            blobs.append(stored)
            lengths.append(len(stored))
            labels.append(label)
            names.append(name)
            digests.append(sources.digest(data))
    meta = npz_bytes(length=np.asarray(lengths, np.int64), label=np.asarray(labels, np.int64),
                     name=np.asarray(names, dtype=str),
                     digest=np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 16),
                     stamp=np.asarray(stamps, np.int64).reshape(-1, 2),
                     anomalies=np.asarray(json.dumps(anomalies)),
                     # int32 per-pixel sums (255 · chunk_size): half the disk
                     **{f"acc_{key}": v for key, v in acc.items()})
    write_atomic(chunk_path(parts, k, "bin"), b"".join(blobs))
    write_atomic(chunk_path(parts, k, "npz"), meta)  # last: marks the chunk done
    return len(items)


def load_chunk(path: str, keys) -> dict:
    """The arrays `keys` of a chunk's .npz (a missing key is None), or PrepError if damaged."""
    try:  # written by us, atomically: only outside damage (or a planted file) fails here
        with np.load(path, allow_pickle=False) as z:
            return {key: z[key] if key in z else None for key in keys}
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise PrepError(f"{path} is damaged ({e}): delete it and re-run the same command (that "
                        f"chunk is recomputed)") from None


def check_unchanged(parts: str, chunks: list) -> None:
    """Refuse to reuse a finished chunk whose input files changed (size or modification time)
    since it was made: its records would not be those of the files now on disk."""
    for k, items in enumerate(chunks):
        path = chunk_path(parts, k, "npz")
        if os.path.exists(path):
            change = sources.first_change(items, load_chunk(path, ["stamp"])["stamp"])
            if change:
                raise PrepError(f"{change} since the interrupted prep made {path}: delete "
                                f"{parts} and re-run to start over")


def plan_of(items, params: dict, chunk_size: int) -> dict:
    h = hashlib.sha256()
    for name, label, (path, offset, size) in items:
        h.update(f"{name}\t{label}\t{os.path.basename(path)}\t{offset}\t{size}\n".encode())
    return dict(params=params, chunk_size=chunk_size, items=len(items), items_sha256=h.hexdigest())


def output_plan(plan: dict) -> dict:
    """What the output depends on (recorded in the manifest): not how the work was chunked."""
    return {k: v for k, v in plan.items() if k != "chunk_size"}


def check_split(out_dir: str, items: list, params: dict, chunk_size: int) -> dict | None:
    """shards.existing_split for this prep: the manifest of an identical split already at
    `out_dir` (nothing to do), None (write it, or resume an unfinished prep of the same inputs
    and options), or WrittenOnce. `alexnet prep` checks every split before writing any, so that a
    refusal changes nothing."""
    plan = json.loads(json.dumps(plan_of(items, params, chunk_size)))  # as it reads back
    manifest = existing_split(out_dir, lambda m: m["prep"].get("plan") == output_plan(plan))
    parts = os.path.join(out_dir, PARTS)
    plan_file = os.path.join(parts, "plan.json")
    if manifest is None and os.path.exists(plan_file):
        with open(plan_file) as f:
            if json.load(f) != plan:
                raise WrittenOnce(f"the unfinished prep in {parts} was started with other inputs "
                                  f"or options: re-run with the same ones, or delete {parts}")
    return manifest


def disk_full(e: OSError, out_dir: str, done: int, total: int) -> PrepError:
    return PrepError(f"disk full while writing {out_dir} ({e}): free some space and re-run the "
                     f"same command; {done} of {total} chunks are finished and will be kept")


def run_chunks(out_dir: str, parts: str, chunks: list, params: dict, workers: int,
               label: str) -> None:
    pending = [k for k in range(len(chunks)) if not os.path.exists(chunk_path(parts, k, "npz"))]
    total = sum(len(c) for c in chunks)
    progress = Progress(total, label, done=total - sum(len(chunks[k]) for k in pending))
    jobs = [(parts, k, chunks[k], params) for k in pending]
    done, pool = len(chunks) - len(pending), None
    try:
        if workers <= 1:
            results = map(process_chunk, jobs)
        else:  # spawn: workers start clean (no forked file descriptors or locks)
            pool = multiprocessing.get_context("spawn").Pool(workers, ignore_ctrl_c)
            results = pool.imap_unordered(process_chunk, jobs)
        for n in results:
            done += 1
            progress.update(n)
        if pool is not None:
            pool.close()
            pool.join()
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise disk_full(e, out_dir, done, len(chunks)) from e
        raise
    finally:
        if pool is not None:
            pool.terminate()  # after an error or Ctrl-C: no orphan workers


def prepare_split(out_dir: str, items: list, classes: list, params: dict, *, skipped=(),
                  workers: int = 1, chunk_size: int = 1024, max_failures: int = 0,
                  source: dict | None = None, label: str = "prep", compare_with=()) -> dict:
    """Prepare one split from its sorted (name, label, src) items; returns the manifest.
    compare_with: prepared split directories whose files this split's duplicates are looked for in
    (e.g. train for val)."""
    out_dir = os.fspath(out_dir)
    parts = os.path.join(out_dir, PARTS)
    plan = json.loads(json.dumps(plan_of(items, params, chunk_size)))  # as it reads back
    manifest = check_split(out_dir, items, params, chunk_size)
    if manifest is not None:
        if os.path.isdir(parts):  # killed while removing the parts after a complete merge
            shutil.rmtree(parts)
        print(f"{label}: {out_dir} is already complete ({manifest['count']:,} images prepared "
              f"from the same inputs and options): nothing written")
        return manifest
    os.makedirs(parts, exist_ok=True)
    plan_file = os.path.join(parts, "plan.json")
    if not os.path.exists(plan_file):
        write_atomic(plan_file, json.dumps(plan, sort_keys=True).encode())
    chunks = [items[i:i + chunk_size] for i in range(0, len(items), chunk_size)]
    check_unchanged(parts, chunks)
    run_chunks(out_dir, parts, chunks, params, workers, label)
    return merge(out_dir, parts, len(chunks), classes, params, plan, list(skipped),
                 max_failures, source or {}, compare_with)


def _chunk_metas(parts, n_chunks) -> list[dict]:
    """Each finished chunk's small arrays; the stats sums stay on disk until they are added."""
    metas = []
    for k in range(n_chunks):
        path = chunk_path(parts, k, "npz")
        metas.append(load_chunk(path, ("length", "label", "name", "digest", "anomalies")))
        if any(v is None for v in metas[-1].values()):
            raise PrepError(f"{path} is damaged (arrays missing): delete it and re-run the same "
                            f"command (that chunk is recomputed)")
    return metas


def _check_failures(anomalies, max_failures, parts) -> None:
    failures = [a for a in anomalies if a["kind"] in FAILURES]
    if len(failures) > max_failures:
        listing = "\n".join(f"  {a['name']}: {a['kind']}: {a['reason']}" for a in failures[:50])
        raise PrepError(f"{len(failures)} inputs could not be prepared (budget --max-failures "
                        f"{max_failures}):\n{listing}\nfinished chunks are kept in {parts}: re-run "
                        f"with --max-failures {len(failures)} to accept them (each is listed in "
                        f"the manifest), or fix the inputs and delete {parts}")


def _copy_chunks(writer, metas, parts, shape, raw: bool, with_stats: bool):
    """Every chunk's records into the shards, in order; returns the summed stats (or the empty
    sums when stats are not asked for)."""
    acc = stats.empty(shape)
    for k, meta in enumerate(metas):
        with open(chunk_path(parts, k, "bin"), "rb") as f:
            blob = f.read()
        pos = 0
        for n, lab, name in zip(meta["length"], meta["label"], meta["name"]):
            record = blob[pos:pos + int(n)]
            writer.add(np.frombuffer(record, np.uint8).reshape(shape) if raw else record,
                       int(lab), str(name))
            pos += int(n)
        if with_stats:
            with np.load(chunk_path(parts, k, "npz"), allow_pickle=False) as z:
                acc = stats.combine([acc, {key: z[f"acc_{key}"].astype(np.int64) for key in acc}])
    return acc


def merge(out_dir, parts, n_chunks, classes, params, plan, skipped, max_failures, source,
          compare_with=()):
    metas = _chunk_metas(parts, n_chunks)
    anomalies = list(skipped) + [a for m in metas for a in json.loads(str(m["anomalies"]))]
    anomalies += sources.duplicates(metas, sources.earlier_digests(compare_with))
    _check_failures(anomalies, max_failures, parts)
    counts = dict(images=sum(len(m["label"]) for m in metas), **{
        kind: sum(a["kind"] == kind for a in anomalies)
        for kind in ("converted", "rejected", "skipped", "missing", "duplicate")})
    shape = image_shape(params)
    raw = params["size"] is None
    writer = ShardWriter(out_dir, "raw" if raw else "jpeg", shape, classes, params["shard_bytes"])
    try:
        acc = _copy_chunks(writer, metas, parts, shape, raw, params["stats"])
        sources.save(out_dir, metas)
        extra = [sources.SOURCES]
        if params["stats"]:
            stats.save(out_dir, acc)
            extra.append(STATS)
        prep = dict(params, plan=output_plan(plan), counts=counts, source=source)
        manifest = writer.finish(prep, anomalies, extra)
    except OSError as e:
        writer.abort()
        if e.errno == errno.ENOSPC:
            raise disk_full(e, out_dir, n_chunks, n_chunks) from e
        raise
    shutil.rmtree(parts)
    return manifest
