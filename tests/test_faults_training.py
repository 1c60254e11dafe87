"""Faults during §5 training (RELIABILITY.md): preemption by SIGTERM/SIGINT, numerical faults
(NaN loss, infinite gradient), "not learning", and under torchrun (2 CPU processes, gloo) crashes,
restarts, dead ranks and one-rank signals. Faults are injected with signals or with the test-only
hook ALEXNET_FAULT (paper_alexnet/fault_hook.py). Kill-and-resume inside one process, corrupt
checkpoints and plain NaN losses are in tests/test_train.py; not repeated here."""
import errno
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from faults import (REPO, SMALL_NET, alexnet, child_env, make_prepared, same_weights, torchrun,
                    train_records, write_recipe)
from paper_alexnet import checkpoint, config, fault_hook, metrics, preemption, watchdog
from paper_alexnet.train import NonFiniteLoss, train

SHORT = SMALL_NET + ["train.epochs=3", "train.steps_per_epoch=4", "train.log_every=1",
                     "train.checkpoint_every=100", "train.keep_last=2"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    torch.set_num_threads(1)
    return make_prepared(tmp_path_factory.mktemp("prepared"))


@pytest.fixture(scope="module")
def uninterrupted(data_root, tmp_path_factory):
    """The reference: SHORT trained in one go, in this process."""
    run = tmp_path_factory.mktemp("whole") / "run"
    train(config.load(None, SHORT), data_root, run, quiet=True)
    return run


def assert_same_run(run, reference):
    assert train_records(run) == train_records(reference)
    assert train_records(run, "val") == train_records(reference, "val")
    assert same_weights(checkpoint.load_latest(run)[1]["model"],
                        checkpoint.load_latest(reference)[1]["model"])


def sigterm_after_step(cmd_args, step, delay, timeout=300):
    """Start `python -m paper_alexnet train …`, SIGTERM it `delay` s after it logs `step`."""
    proc = subprocess.Popen([sys.executable, "-m", "paper_alexnet", *map(str, cmd_args)],
                            env=child_env(), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(rf" step {step}/", line):
            time.sleep(delay)
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, "".join(lines) + out, err


def test_sigterm_at_a_random_moment_then_resume_is_bit_identical(data_root, uninterrupted,
                                                                 tmp_path):
    """A real SIGTERM to `alexnet train` (a subprocess) at a random step and delay: exit 75 with
    a checkpoint; the same command then finishes the run, equal to the uninterrupted one."""
    seed = random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    step, delay = rng.randint(1, 10), rng.uniform(0.0, 0.02)
    why = f"(SIGTERM after step {step} + {delay:.3f} s, seed {seed})"
    recipe = write_recipe(tmp_path / "short.yaml", SHORT)
    run = tmp_path / "run"
    args = ["train", "--config", recipe, "--data", data_root, "--run-dir", run]
    code, out, err = sigterm_after_step(args, step, delay)
    assert code == preemption.EXIT_PREEMPTED, f"{why}\n{err}"
    stopped = re.search(r"stopped by SIGTERM after step (\d+)", err)
    assert stopped, err
    at = int(stopped.group(1))
    assert step <= at < 12, why                 # it finishes the step in progress
    assert checkpoint.load_latest(run)[1]["global_step"] == at, why
    events = metrics.read_metrics(run, "event")
    assert events[-1]["event"] == "preempted" and events[-1]["step"] == at
    resumed = alexnet(["train", "--data", data_root, "--run-dir", run])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {run}" in resumed.stdout
    assert_same_run(run, uninterrupted)


def test_signal_stops_after_the_step_in_progress(data_root, uninterrupted, tmp_path, monkeypatch):
    """In process: SIGTERM delivered during step 3 (fault hook) stops after step 3; SIGINT
    (Ctrl-C) landing after step 6's check stops after step 7; one landing in the last step of an
    epoch (4) stops after that epoch's evaluation and checkpoint. Handlers are restored; the final
    result equals the uninterrupted run."""
    run = tmp_path / "run"
    monkeypatch.setenv(fault_hook.ENV, "sigterm:3")
    with pytest.raises(preemption.Preempted, match="SIGTERM after step 3") as info:
        train(config.load(None, SHORT), data_root, run, quiet=True)
    assert info.value.global_step == 3
    assert [s for s, _ in checkpoint.list_checkpoints(run)] == [3]
    monkeypatch.delenv(fault_hook.ENV)

    def ctrl_c_at(at):
        def hook(step):
            if step == at:
                os.kill(os.getpid(), signal.SIGINT)
        return hook
    with pytest.raises(preemption.Preempted, match="SIGINT after step 4"):
        train(None, data_root, run, after_step=ctrl_c_at(4), quiet=True)
    state = checkpoint.load_latest(run)[1]
    assert (state["global_step"], state["epoch"], state["step"]) == (4, 1, 0)   # epoch 1 done
    assert train_records(run, "val") == train_records(uninterrupted, "val")[:1]
    with pytest.raises(preemption.Preempted, match="SIGINT after step 7"):
        train(None, data_root, run, after_step=ctrl_c_at(6), quiet=True)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert [s for s, _ in checkpoint.list_checkpoints(run)] == [4, 7]
    train(None, data_root, run, quiet=True)
    assert_same_run(run, uninterrupted)


def test_second_ctrl_c_stops_at_once(data_root, tmp_path):
    def ctrl_c_twice(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(config.load(None, SHORT), data_root, tmp_path / "run", after_step=ctrl_c_twice,
              quiet=True)
    assert checkpoint.list_checkpoints(tmp_path / "run") == []   # nothing half-written either


@pytest.mark.parametrize("kind", ["nan_loss", "inf_grad"])
def test_non_finite_loss_or_gradient_stops_before_the_update(data_root, tmp_path, monkeypatch,
                                                             kind):
    """NaN loss, or a single +inf gradient element with a finite loss, at step 5: the run stops
    naming step 5; every checkpoint (one per step) is of steps 1-4 and finite."""
    monkeypatch.setenv(fault_hook.ENV, f"{kind}:5")
    cfg = config.load(None, SHORT + ["train.checkpoint_every=1", "train.keep_last=100"])
    with pytest.raises(NonFiniteLoss, match="at step 5 "):
        train(cfg, data_root, tmp_path / "run", quiet=True)
    saved = checkpoint.list_checkpoints(tmp_path / "run")
    assert [s for s, _ in saved] == [1, 2, 3, 4]
    newest = checkpoint.load(saved[-1][1])["model"]
    assert all(torch.isfinite(v).all() for v in newest.values())
    assert all(math.isfinite(r[1]) for r in train_records(tmp_path / "run"))


def test_finite_grads_reference():
    """finite_grads against a hand check: any NaN/inf element anywhere makes it False."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    net(torch.randn(5, 3)).sum().backward()
    assert bool(watchdog.finite_grads(net, "cpu"))
    for value in (math.inf, -math.inf, math.nan):
        p = list(net.parameters())[2]
        saved = p.grad.clone()
        p.grad[1, 2] = value
        assert not bool(watchdog.finite_grads(net, "cpu"))
        p.grad.copy_(saved)
    net[1].bias.grad = None                    # parameters without a gradient are ignored
    assert bool(watchdog.finite_grads(net, "cpu"))


def test_loss_at_chance_is_reported_as_not_learning(data_root, tmp_path, capsys):
    """optim.lr=1e-9: the loss stays at ln 4; with not_learning_epochs=2 epochs 2 and 3 report it
    (stderr and an event record), naming the usual causes; with 0 nothing is reported."""
    cfg = config.load(None, SHORT + ["optim.lr=1e-9", "train.not_learning_epochs=2"])
    train(cfg, data_root, tmp_path / "run", quiet=True)
    events = [e for e in metrics.read_metrics(tmp_path / "run", "event")
              if e["event"] == "not_learning"]
    assert [e["epoch"] for e in events] == [2, 3]
    err = capsys.readouterr().err
    assert "not learning" in err and "learning rate" in err and "model.init" in err
    off = config.load(None, SHORT + ["optim.lr=1e-9", "train.not_learning_epochs=0",
                                     "train.epochs=2"])
    train(off, data_root, tmp_path / "off", quiet=True)
    assert not [e for e in metrics.read_metrics(tmp_path / "off", "event")
                if e["event"] == "not_learning"]


def test_not_learning_rule_by_hand():
    chance = math.log(10)

    def records(*losses):
        return [{"kind": "train", "epoch": e + 1, "loss": v} for e, v in enumerate(losses)]
    assert watchdog.not_learning(records(chance, chance, chance), 10, 3) is not None
    assert watchdog.not_learning(records(chance, chance), 10, 3) is None       # too few epochs
    assert watchdog.not_learning(records(chance, 0.9 * chance, chance), 10, 3) is None
    assert watchdog.not_learning(records(0.5, chance, 1.5 * chance), 10, 2) is not None
    assert watchdog.not_learning(records(chance, math.nan), 10, 2) is None      # NaN: elsewhere
    assert watchdog.not_learning(records(chance, chance), 10, 0) is None        # off


def test_fault_spec_is_checked():
    assert fault_hook.parse("crash:5,rank:1,attempts:1") == fault_hook.Fault("crash", 5, 1, 1)
    for bad in ("crash", "explode:3", "crash:0", "crash:2,ranks:1", "crash:x"):
        with pytest.raises(ValueError, match="ALEXNET_FAULT"):
            fault_hook.parse(bad)


# --------------------------------------------------------------------------- slow: many signals

@pytest.mark.slow
def test_many_sigterms_in_a_row_then_bit_identical(data_root, tmp_path):
    """SIGTERM the same run again and again, 1-2 steps after each resume, until it completes
    (24 steps, about 15 stops); the result equals the uninterrupted run."""
    steps = SHORT + ["train.epochs=6"]
    reference = tmp_path / "whole"
    train(config.load(None, steps), data_root, reference, quiet=True)
    recipe = write_recipe(tmp_path / "long.yaml", steps)
    run, rng, done, stops = tmp_path / "run", random.Random(), 0, []
    args = ["train", "--config", recipe, "--data", data_root, "--run-dir", run]
    while done < 22:
        step = min(done + rng.randint(1, 2), 22)
        code, _, err = sigterm_after_step(args, step, rng.uniform(0.0, 0.02))
        assert code == preemption.EXIT_PREEMPTED, err
        done = int(re.search(r"after step (\d+)", err).group(1))
        stops.append(done)
        args = ["train", "--data", data_root, "--run-dir", run]
    assert alexnet(args).returncode == 0
    print(f"{len(stops)} SIGTERM stops, at steps {stops}")
    assert len(stops) >= 10
    assert_same_run(run, reference)


# --------------------------------------------------------------------------- slow: torchrun (gloo)

DDP = SMALL_NET + ["train.epochs=2", "train.steps_per_epoch=4", "train.log_every=2",
                   "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def ddp_reference(data_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    recipe = write_recipe(folder / "ddp.yaml", DDP)
    run = folder / "run"
    done = torchrun(["train", "--config", recipe, "--data", data_root, "--run-dir", run])
    assert done.returncode == 0, done.stderr[-3000:]
    return recipe, run


def ddp_train(recipe, data_root, run, fault=None, max_restarts=0):
    env = child_env(**({fault_hook.ENV: fault} if fault else {}))
    start = time.monotonic()
    done = torchrun(["train", "--config", recipe, "--data", data_root, "--run-dir", run],
                    max_restarts=max_restarts, env=env)
    return done, time.monotonic() - start


@pytest.mark.slow
def test_torchrun_restarts_a_crashed_worker_which_resumes(data_root, ddp_reference, tmp_path):
    """Rank 1 crashes at step 5 on the first attempt; torchrun --max-restarts 1 restarts both
    workers, which resume from the step-4 checkpoint and finish: equal to the uninterrupted job."""
    recipe, reference = ddp_reference
    run = tmp_path / "run"
    done, seconds = ddp_train(recipe, data_root, run, "crash:5,rank:1,attempts:1", 1)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "injected crash at step 5" in done.stderr
    assert "resumed from" in done.stdout and "ckpt-000000004.pt" in done.stdout
    assert_same_run(run, reference)
    print(f"crash + restart + resume: {seconds:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["crash:3,rank:1", "kill:3,rank:1"])
def test_torchrun_gives_up_when_restarts_run_out(data_root, ddp_reference, tmp_path, fault):
    """Rank 1 dies at step 3 on every attempt (an exception, or SIGKILL): the surviving rank
    leaves its collective at once (gloo: connection closed by peer), torchrun restarts once,
    then fails with a non-zero status naming the failed rank. No hang; the step-2 checkpoint
    stays loadable."""
    recipe, _ = ddp_reference
    run = tmp_path / "run"
    done, seconds = ddp_train(recipe, data_root, run, fault, max_restarts=1)
    assert done.returncode != 0
    assert "ChildFailedError" in done.stderr and "rank" in done.stderr
    assert done.stderr.count("fault injection is active on rank 1 (attempt") == 2   # restarted
    if fault.startswith("crash"):
        assert done.stderr.count("injected crash at step 3") >= 2          # both attempts
    else:
        assert "Signal 9 (SIGKILL)" in done.stderr
    assert seconds < 150, f"took {seconds:.0f} s"
    assert checkpoint.load_latest(run)[1]["global_step"] == 2
    print(f"{fault}: gave up after {seconds:.1f} s")


@pytest.mark.slow
def test_torchrun_inf_gradient_on_one_rank_stops_every_rank(data_root, ddp_reference, tmp_path):
    recipe, _ = ddp_reference
    run = tmp_path / "run"
    done, _ = ddp_train(recipe, data_root, run, "inf_grad:3,rank:1")
    assert done.returncode != 0
    assert done.stderr.count("NaN or infinite at step 3 ") == 2, done.stderr[-3000:]   # both ranks
    assert [s for s, _ in checkpoint.list_checkpoints(run)] == [2]


@pytest.mark.slow
def test_torchrun_sigterm_to_one_rank_stops_all_at_the_same_step(data_root, ddp_reference,
                                                                   tmp_path):
    """SIGTERM reaches rank 1 only, during step 5: the ranks agree at the next log step (6),
    save the step-6 checkpoint and exit 75 (torchrun reports the failure). The job started again
    resumes and equals the uninterrupted one."""
    recipe, reference = ddp_reference
    run = tmp_path / "run"
    done, _ = ddp_train(recipe, data_root, run, "sigterm:5,rank:1")
    assert done.returncode != 0
    # printed by rank 0, which got no signal itself
    assert "stopped by a signal to another rank after step 6" in done.stderr, done.stderr[-3000:]
    assert "exitcode: 75" in done.stderr
    assert checkpoint.load_latest(run)[1]["global_step"] == 6
    again, _ = ddp_train(recipe, data_root, run)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_same_run(run, reference)


@pytest.mark.slow
def test_sigterm_to_torchrun_checkpoints_and_resumes(data_root, ddp_reference, tmp_path):
    """What a scheduler does: SIGTERM to torchrun, which forwards it to every worker; they stop
    at an agreed step with a checkpoint well within torchrun's 30 s grace period."""
    recipe, reference = ddp_reference
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "paper_alexnet", "train", "--config", str(recipe), "--data", data_root,
           "--run-dir", str(run)]
    proc = subprocess.Popen(cmd, env=child_env(), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if " step 2/" in line:
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            break
    _, err = proc.communicate(timeout=120)
    seconds = time.monotonic() - sent
    assert re.search(r"stopped by SIGTERM after step \d", err), err[-3000:]
    assert seconds < 30
    at = checkpoint.load_latest(run)[1]["global_step"]
    assert at >= 2
    again, _ = ddp_train(recipe, data_root, run)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_same_run(run, reference)
    print(f"SIGTERM to torchrun: workers stopped after step {at} in {seconds:.1f} s")


# --------------------------------------------------------------------------- training: full disk

def test_full_disk_during_training_stops_clearly_and_resumes(data_root, uninterrupted, tmp_path,
                                                            monkeypatch, capsys):
    """`alexnet train` whose disk fills up at the 3rd checkpoint (ENOSPC in the middle of the
    file): exit 1 with a message saying what to do; the newest checkpoint is the previous one;
    once there is space again the same command finishes, equal to the uninterrupted run."""
    from paper_alexnet.train import main
    recipe = write_recipe(tmp_path / "short.yaml", SHORT)
    args = ["--config", str(recipe), "--data", data_root, "--run-dir", str(tmp_path / "run")]
    real, saves = torch.save, []

    def fill_disk(obj, f, *a, **k):
        saves.append(1)
        if len(saves) == 3:
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", fill_disk)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "run the same command to resume" in err
    assert check_run_newest(tmp_path / "run") == 8          # checkpoints of steps 4, 8; not 12
    monkeypatch.setattr(torch, "save", real)
    assert main(args) == 0
    assert_same_run(tmp_path / "run", uninterrupted)


def check_run_newest(run_dir):
    return checkpoint.load_latest(run_dir)[1]["global_step"]


# --------------------------------------------------------------------------- checkpoint writes

def _save_forever(run_dir, keep_last):
    """Child process: resume from the newest checkpoint and save the next steps, forever."""
    found = checkpoint.load_latest(run_dir)
    step = found[1]["step"] if found else 0
    while True:
        step += 1
        state = {"step": step, "w": torch.full((1 << 18,), float(step))}   # 1 MiB
        checkpoint.save(run_dir, state, step, keep_last=keep_last, milestone=step % 7 == 0)


def check_newest(run_dir):
    """load_latest returns a checkpoint whose contents are the ones its name promises."""
    path, state = checkpoint.load_latest(run_dir)
    step = int(path.name[5:14])
    assert state["step"] == step and torch.equal(state["w"], torch.full((1 << 18,), float(step)))
    return step


def sigkill_saving_loop(run_dir, kills, keep_last, seed):
    import multiprocessing
    rng, ctx, steps = random.Random(seed), multiprocessing.get_context("fork"), []
    for _ in range(kills):
        child = ctx.Process(target=_save_forever, args=(run_dir, keep_last))
        child.start()
        time.sleep(rng.uniform(0.0, 0.25))
        child.kill()                                     # SIGKILL at a random moment
        child.join()
        assert child.exitcode == -signal.SIGKILL
        if checkpoint.list_checkpoints(run_dir):
            steps.append(check_newest(run_dir))
    return steps


@pytest.mark.parametrize("kills", [pytest.param(12, id="12"),
                                   pytest.param(300, id="300", marks=pytest.mark.slow)])
def test_sigkill_while_saving_always_leaves_a_loadable_checkpoint(tmp_path, kills):
    """A process saving checkpoints in a loop is SIGKILLed at random moments, `kills` times in a
    row (each one resumes from load_latest): the newest checkpoint always loads and holds what
    its name says, no step goes backwards, and killed writes leave no garbage behind."""
    seed = random.SystemRandom().randrange(1 << 30)
    steps = sigkill_saving_loop(tmp_path, kills, keep_last=1, seed=seed)
    assert steps and steps == sorted(steps), f"seed {seed}: {steps}"
    leftovers = [n for n in os.listdir(tmp_path / "checkpoints") if n.endswith(".tmp")]
    assert len(leftovers) <= 2, leftovers                # only the last kill's, if any
    print(f"{kills} SIGKILLs while saving (seed {seed}): newest step went 0 -> {steps[-1]}")


def _fail_at(monkeypatch, target, name, nth, calls):
    real = getattr(target, name)

    def failing(*args, **kwargs):
        calls.append(name)
        if len(calls) == nth:
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")
        return real(*args, **kwargs)
    monkeypatch.setattr(target, name, failing)


@pytest.mark.parametrize("where", ["torch.save", "os.fsync", "os.replace"])
def test_full_disk_at_any_point_of_a_save_keeps_the_only_checkpoint(tmp_path, monkeypatch,
                                                                    where):
    """keep_last=1 and one good checkpoint; the next save fails with ENOSPC at the 1st, 2nd, …
    call of `where` in turn (checkpoint data, digest sidecar, rename, directory fsync) until it
    succeeds: after every failure the newest checkpoint loads and holds what its name says,
    and no temporary file is left."""
    target = {"torch.save": torch, "os.fsync": os, "os.replace": os}[where]
    name = where.split(".")[1]
    checkpoint.save(tmp_path, {"step": 1, "w": torch.full((1 << 18,), 1.0)}, 1, keep_last=1)
    failures = 0
    for nth in range(1, 10):
        calls = []
        with monkeypatch.context() as m:
            _fail_at(m, target, name, nth, calls)
            try:
                checkpoint.save(tmp_path, {"step": 2, "w": torch.full((1 << 18,), 2.0)}, 2,
                                keep_last=1)
            except OSError as err:
                assert err.errno == errno.ENOSPC
                failures += 1
            else:
                break
        assert check_newest(tmp_path) in (1, 2)
        assert all(checkpoint.load(p) for _, p in checkpoint.list_checkpoints(tmp_path))
        assert not [n for n in os.listdir(tmp_path / "checkpoints") if n.endswith(".tmp")]
        _remove_step(tmp_path, 2)              # back to "one good checkpoint" for the next try
    assert failures >= 1 and check_newest(tmp_path) == 2
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [2]
    print(f"{where}: ENOSPC injected at {failures} points of a save")


def _remove_step(run_dir, step):
    path = checkpoint.checkpoint_path(run_dir, step)
    for p in (path, Path(f"{path}.sha256"), Path(f"{path}.milestone")):
        p.unlink(missing_ok=True)


@pytest.mark.parametrize("damages", [pytest.param(30, id="30"),
                                     pytest.param(1000, id="1000", marks=pytest.mark.slow)])
def test_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path, damages):
    """The newest checkpoint damaged at random (truncated anywhere, 1-8 bytes flipped anywhere,
    a block zeroed, emptied; or its digest file damaged): load_latest always returns the previous
    one, with a warning naming the damaged file."""
    rng = random.Random(random.SystemRandom().randrange(1 << 30))
    for step in (1, 2):
        checkpoint.save(tmp_path, {"step": step, "w": torch.full((1 << 18,), float(step))}, step,
                        keep_last=3)
    newest = checkpoint.checkpoint_path(tmp_path, 2)
    sidecar = Path(f"{newest}.sha256")
    good, good_digest = newest.read_bytes(), sidecar.read_bytes()
    kinds = {}
    for _ in range(damages):
        data, kind = bytearray(good), rng.choice(["truncate", "flip", "zero", "empty", "digest"])
        if kind == "truncate":
            del data[rng.randrange(len(data)):]
        elif kind == "flip":
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] ^= rng.randint(1, 255)
        elif kind == "zero":
            at = rng.randrange(len(data))
            n = min(rng.randint(1, 4096), len(data) - at)
            data[at:at + n] = bytes(n)
        elif kind == "empty":
            data = bytearray()
        newest.write_bytes(bytes(data))
        sidecar.write_bytes(good_digest if kind != "digest" else good_digest[::-1])
        if bytes(data) == good and kind != "digest":
            continue                                    # a zeroed block that was zero already
        kinds[kind] = kinds.get(kind, 0) + 1
        with pytest.warns(UserWarning, match=r"ckpt-000000002\.pt.*using .*ckpt-000000001\.pt"):
            assert check_newest(tmp_path) == 1
    print(f"damaged newest checkpoints, all skipped: {kinds}")
