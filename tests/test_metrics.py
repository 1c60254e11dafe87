"""Metrics log (round trip, resume truncation), running means, top-k errors, progress lines."""
import json
import math

import pytest
import torch

from paper_alexnet.run.metrics import (MetricsLog, RunningMeans, format_duration,
                                   read_metrics, topk_errors)

torch.set_num_threads(1)


def test_log_round_trip(tmp_path):
    with MetricsLog(tmp_path) as log:
        log.log("train", step=10, epoch=1, loss=torch.tensor(2.5), top1=0.75, lr=0.01)
        log.log("val", step=20, epoch=1, top1=0.5, top5=0.25)
        log.log("event", step=20, message="lr divided", loss=math.nan)
    records = read_metrics(tmp_path)
    assert [r["kind"] for r in records] == ["train", "val", "event"]
    assert records[0]["loss"] == 2.5 and records[0]["epoch"] == 1 and records[0]["step"] == 10
    assert math.isnan(records[2]["loss"]) and "time" in records[1]
    assert read_metrics(tmp_path, kind="val") == [records[1]]
    # one JSON object per line, each complete on disk as soon as it is logged (flushed)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [10, 20, 20]


def test_each_line_is_flushed_before_close(tmp_path):
    log = MetricsLog(tmp_path)
    log.log("train", step=1, loss=1.0)
    assert read_metrics(tmp_path)[0]["loss"] == 1.0
    log.close()


def test_resume_drops_records_after_the_checkpoint_step(tmp_path):
    with MetricsLog(tmp_path) as log:
        for step in (100, 200, 300, 400):
            log.log("train", step=step, loss=float(step))
    # a crash in mid-line
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 5')
    with pytest.warns(UserWarning, match="incomplete last line"):
        assert len(read_metrics(tmp_path)) == 4
    with MetricsLog(tmp_path, resume_step=200) as log:   # resumed from ckpt of step 200
        assert log.dropped == 3
        log.log("train", step=300, loss=-300.0)
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [
        (100, 100.0), (200, 200.0), (300, -300.0)]
    kept_aside = (tmp_path / "metrics.dropped.jsonl").read_text().splitlines()
    assert len(kept_aside) == 3 and json.loads(kept_aside[0])["step"] == 300


def test_fresh_run_sets_old_records_aside(tmp_path):
    with MetricsLog(tmp_path) as log:
        log.log("train", step=1, loss=1.0)
    with MetricsLog(tmp_path, resume_step=None) as log:
        assert log.dropped == 1
    assert read_metrics(tmp_path) == []


def test_bad_middle_line_is_an_error_naming_it(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl line 2"):
        read_metrics(tmp_path)


def test_topk_errors_hand_checked():
    scores = torch.tensor([[0.10, 0.50, 0.20, 0.15, 0.05, 0.00],   # label 1: top-1 right
                           [0.30, 0.25, 0.20, 0.15, 0.06, 0.04],   # label 4: 5th -> top-5 right
                           [0.30, 0.25, 0.20, 0.15, 0.06, 0.04],   # label 5: 6th -> both wrong
                           [0.00, 0.10, 0.20, 0.30, 0.40, 0.00]])  # label 3: 2nd
    labels = torch.tensor([1, 4, 5, 3])
    top1, top5 = topk_errors(scores, labels)
    assert top1.dtype == torch.int64 and top1.item() == 3 and top5.item() == 1
    logits = scores.log()   # monotone: the same answer from logits
    assert [t.item() for t in topk_errors(logits, labels, ks=(1, 2, 5))] == [3, 2, 1]
    assert topk_errors(scores[:, :3], torch.tensor([1, 0, 2, 0]), ks=(5,))[0].item() == 0


def test_running_means_flush():
    means = RunningMeans("cpu")
    means.update(4, loss=torch.tensor(2.0) * 4, top1=torch.tensor(3))
    means.update(6, loss=torch.tensor(1.0) * 6, top1=torch.tensor(0))
    out = means.flush()
    assert out == {"loss": pytest.approx(1.4), "top1": pytest.approx(0.3), "count": 10}
    assert means.count == 0 and means.sums == {}
    means.update(2, loss=1.0)
    assert means.flush()["loss"] == 0.5


def test_durations():
    assert format_duration(80) == "1m20s"
    assert format_duration(3 * 86400 + 4 * 3600 + 59) == "3d04h"
    assert format_duration(math.nan) == "?"


@pytest.mark.gpu
def test_running_means_and_topk_on_cuda():
    scores = torch.eye(6, device="cuda")
    labels = torch.tensor([0, 1, 2, 3, 4, 0], device="cuda")
    top1, top5 = topk_errors(scores, labels)
    assert top1.device.type == "cuda" and top1.item() == 1
    means = RunningMeans("cuda")
    means.update(6, top1=top1, top5=top5)
    assert means.flush() == {"top1": pytest.approx(1 / 6), "top5": pytest.approx(0.0),
                             "count": 6}


def test_one_eta_for_every_progress_line(monkeypatch):
    import io
    from data_prep import progress
    assert progress.seconds_left(800, 100, 10.0) == 80.0     # 10 a second, 800 to go
    assert progress.seconds_left(800, 0, 10.0) == math.inf   # nothing done yet: unknown
    clock = iter([0.0, 20.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = progress.Progress(total=1000, label="train", done=100, stream=out)
    bar.update(200)              # 200 images in 20 s since the start; 700 to go at 10 a second
    assert out.getvalue() == "train: 300/1000 images, 10 img/s, ETA 00:01:10\n"
