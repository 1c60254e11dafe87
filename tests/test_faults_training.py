"""Faults during §5 training in one run (RELIABILITY.md): preemption by SIGTERM/SIGINT, numerical
faults (NaN loss, infinite gradient), "not learning", a full disk. Faults are injected with signals
or with the tests' fault callbacks (tests/fault_hook.py). Under torchrun:
tests/test_faults_torchrun.py; checkpoint writes: tests/test_faults_checkpoint.py. Kill-and-resume
inside one process, corrupt checkpoints and plain NaN losses are in tests/test_train.py; not
repeated here."""
import errno
import math
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import fault_hook
from data_prep import exits
from faults import (REPO, SMALL_NET, AtStep, alexnet, assert_same_run, child_env, program,
                    train_records, write_recipe)
from paper_alexnet import config
from paper_alexnet.run import checkpoint, metrics, preemption, watchdog
from paper_alexnet.train import NonFiniteLoss, train

SHORT = SMALL_NET + ["train.epochs=3", "train.steps_per_epoch=4", "train.log_every=1",
                     "train.checkpoint_every=100", "train.keep_last=2"]


@pytest.fixture(scope="module")
def uninterrupted(data_root, tmp_path_factory):
    """The reference: SHORT trained in one go, in this process."""
    run = tmp_path_factory.mktemp("whole") / "run"
    train(config.load(None, SHORT), data_root, run, quiet=True)
    return run


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
    assert code == exits.STOPPED, f"{why}\n{err}"
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
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(preemption.Preempted, match="SIGTERM after step 3") as info:
        train(config.load(None, SHORT), data_root, run, quiet=True,
              callbacks=[fault_hook.Inject("sigterm:3")])
    assert info.value.global_step == 3
    assert [s for s, _ in checkpoint.list_checkpoints(run)] == [3]

    def ctrl_c_at(at):
        def hook(step):
            if step == at:
                os.kill(os.getpid(), signal.SIGINT)
        return hook
    with pytest.raises(preemption.Preempted, match="SIGINT after step 4"):
        train(None, data_root, run, callbacks=[AtStep(ctrl_c_at(4))], quiet=True)
    state = checkpoint.load_latest(run)[1]
    assert (state["global_step"], state["epoch"], state["step"]) == (4, 1, 0)   # epoch 1 done
    assert train_records(run, "val") == train_records(uninterrupted, "val")[:1]
    with pytest.raises(preemption.Preempted, match="SIGINT after step 7"):
        train(None, data_root, run, callbacks=[AtStep(ctrl_c_at(6))], quiet=True)
    # put back as they were (not necessarily Python's defaults: under nohup SIGINT is ignored)
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    assert [s for s, _ in checkpoint.list_checkpoints(run)] == [4, 7]
    train(None, data_root, run, quiet=True)
    assert_same_run(run, uninterrupted)


def test_second_ctrl_c_stops_at_once(data_root, tmp_path):
    def ctrl_c_twice(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(config.load(None, SHORT), data_root, tmp_path / "run", callbacks=[AtStep(ctrl_c_twice)],
              quiet=True)
    assert checkpoint.list_checkpoints(tmp_path / "run") == []   # nothing half-written either


def test_second_ctrl_c_while_saving_leaves_the_previous_checkpoint_valid(data_root, uninterrupted,
                                                                       tmp_path, monkeypatch,
                                                                       capfd):
    """The first Ctrl-C (after step 6) says what happens; a second one lands while that step's
    checkpoint is being written (its bytes are on disk, its digest being computed): the write is
    abandoned, no temporary file is left, the checkpoint of step 4 (end of epoch 1) stays the
    newest and verifies, and the same command resumes to the uninterrupted result."""
    run, armed = tmp_path / "run", []
    real_sha256 = checkpoint.sha256_file

    def second_ctrl_c_in_the_write(path):
        if armed and str(path).endswith(".tmp"):
            os.kill(os.getpid(), signal.SIGINT)
        return real_sha256(path)

    def first_ctrl_c(step):
        if step == 6:
            armed.append(step)
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(checkpoint, "sha256_file", second_ctrl_c_in_the_write)
    with pytest.raises(KeyboardInterrupt):
        train(config.load(None, SHORT), data_root, run, callbacks=[AtStep(first_ctrl_c)], quiet=True)
    assert "stopping after this step and saving a checkpoint; Ctrl-C again to abort" in \
        capfd.readouterr().err
    monkeypatch.undo()
    assert [s for s, _ in checkpoint.list_checkpoints(run)] == [4]
    assert checkpoint.load(checkpoint.checkpoint_path(run, 4))["global_step"] == 4
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    train(None, data_root, run, quiet=True)
    assert_same_run(run, uninterrupted)


def test_forked_workers_ignore_ctrl_c(capfd):
    """A terminal's Ctrl-C reaches the DataLoader workers too (same process group); forked after
    the handler was installed, they ignore it (no flag, no second announcement, no
    KeyboardInterrupt): only the training process stops, once."""
    stop = preemption.StopRequest(announce=preemption.TRAINING).install()
    try:
        pid = os.fork()
        if pid == 0:                        # the child touches no torch op (no OpenMP pool)
            code = 4
            try:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
                code = 3 if stop.requested else 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        stop.restore()
    assert os.waitstatus_to_exitcode(status) == 0 and not stop.requested
    assert "stopping after this step" not in capfd.readouterr().err


def test_train_aborted_by_a_second_ctrl_c_exits_130_in_one_line(tmp_path, monkeypatch, capsys):
    from paper_alexnet import train as train_module

    def aborted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "train", aborted)
    recipe = write_recipe(tmp_path / "r.yaml", SHORT)
    assert train_module.main(["--config", str(recipe), "--data", str(tmp_path),
                              "--run-dir", str(tmp_path / "run")]) == exits.ABORTED == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "aborted by a second Ctrl-C" in err[0]
    assert "run the same command to resume" in err[0]


@pytest.mark.parametrize("kind", ["nan_loss", "inf_grad"])
def test_non_finite_loss_or_gradient_stops_before_the_update(data_root, tmp_path, monkeypatch,
                                                             kind):
    """NaN loss, or a single +inf gradient element with a finite loss, at step 5: the run stops
    naming step 5; every checkpoint (one per step) is of steps 1-4 and finite."""
    cfg = config.load(None, SHORT + ["train.checkpoint_every=1", "train.keep_last=100"])
    with pytest.raises(NonFiniteLoss, match="at step 5 "):
        train(cfg, data_root, tmp_path / "run", quiet=True,
              callbacks=[fault_hook.Inject(f"{kind}:5")])
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


# --------------------------------------------------------------------------- signals to the group

WITH_WORKERS = [o for o in SHORT if o != "data.workers=0"] + ["data.workers=2"]


def signal_group_when(cmd_args, tmp_path, pattern, signals, stream="stdout", env=None,
                      timeout=300):
    """Start `python -m paper_alexnet …` in a session of its own (as a shell job, timeout(1) or
    SLURM run it) and send each (signal, delay) of `signals` to its whole process group once a
    line of its `stream` ("stdout" or "stderr") matches `pattern`. Returns (exit status, stdout,
    stderr); every process of the group has ended by then."""
    out_file = tmp_path / "stdout.txt"
    with open(out_file, "w") as out:
        proc = subprocess.Popen([sys.executable, *program(env), *map(str, cmd_args)],
                                env=env or child_env(), cwd=REPO, stdout=out,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        err = []
        watched = proc.stderr if stream == "stderr" else open(out_file)
        while proc.poll() is None:
            line = watched.readline()
            err.extend([line] if watched is proc.stderr else [])
            if re.search(pattern, line):
                for signum, delay in signals:
                    time.sleep(delay)
                    os.killpg(proc.pid, signum)
                break
            if not line:
                time.sleep(0.01)
        err.append(proc.communicate(timeout=timeout)[1])
    deadline = time.monotonic() + 30   # the decode workers end with the training process
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"processes of group {proc.pid} outlived `alexnet train`")
    return proc.returncode, out_file.read_text(), "".join(err)


def test_group_sigterm_with_decode_workers_checkpoints_and_resumes(data_root, uninterrupted,
                                                                   tmp_path):
    """SIGTERM to the process group of `alexnet train` with 2 decode workers (timeout(1), SLURM,
    `kill -TERM -- -PGID`), after a random step (during a step, or during an epoch's
    evaluation): the workers live on until the training process has written the checkpoint of
    its stop; exit 75; the same command resumes to the uninterrupted result. Before: the workers
    died first and the run failed with "DataLoader worker … killed by signal", exit 1, no
    checkpoint."""
    seed = random.SystemRandom().randrange(1 << 30)
    step = random.Random(seed).randint(1, 10)
    why = f"(group SIGTERM after step {step}, seed {seed})"
    recipe = write_recipe(tmp_path / "workers.yaml", WITH_WORKERS)
    run = tmp_path / "run"
    args = ["train", "--config", recipe, "--data", data_root, "--run-dir", run]
    code, _, err = signal_group_when(args, tmp_path, rf" step {step}/",
                                     [(signal.SIGTERM, 0.0)])
    assert code == exits.STOPPED, f"{why}\n{err}"
    assert "killed by signal" not in err and "Traceback" not in err, err
    at = int(re.search(r"stopped by SIGTERM after step (\d+)", err).group(1))
    assert step <= at < 12, why
    assert checkpoint.load_latest(run)[1]["global_step"] == at, why
    resumed = alexnet(["train", "--data", data_root, "--run-dir", run])
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, uninterrupted)


def test_second_ctrl_c_to_the_group_during_a_long_step_aborts(data_root, tmp_path):
    """Ctrl-C twice (SIGINT to the process group, 0.05-0.5 s apart) while one long torch call of
    step 6 runs, as the backward pass of AlexNet on a CPU: exit 130 in one line, without
    finishing the step; the checkpoint of step 4 (end of epoch 1) is still the newest and loads.
    Before: Python ran its handler once for the two signals, so the step finished, its
    checkpoint was written and the run exited 75."""
    gap = random.SystemRandom().uniform(0.05, 0.5)
    recipe = write_recipe(tmp_path / "workers.yaml", WITH_WORKERS)
    run = tmp_path / "run"
    args = ["train", "--config", recipe, "--data", data_root, "--run-dir", run]
    code, _, err = signal_group_when(args, tmp_path, "ALEXNET_FAULT: busy",
                                     [(signal.SIGINT, 0.0), (signal.SIGINT, gap)], "stderr",
                                     env=child_env(ALEXNET_FAULT="busy:6"))
    assert code == exits.ABORTED, f"(second SIGINT {gap:.3f} s after the first)\n{err}"
    assert err.count("aborted by a second Ctrl-C") == 1 and "Traceback" not in err, err
    assert [s for s, _ in checkpoint.list_checkpoints(run)] == [4]
    assert checkpoint.load(checkpoint.checkpoint_path(run, 4))["global_step"] == 4
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_two_ctrl_c_in_one_torch_call_are_counted_as_two():
    """In process: two SIGINTs 0.05 s apart (from another thread) while one long torch call runs
    (0.5-2 s) are two Ctrl-Cs, not one: KeyboardInterrupt as soon as the call returns."""
    import threading

    def twice():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)                     # sent at once, the kernel would merge them
        os.kill(os.getpid(), signal.SIGINT)
    square = torch.ones(3000, 3000)
    ctrl_c_twice = threading.Timer(0.02, twice)
    stop = preemption.StopRequest().install()
    try:
        with pytest.raises(KeyboardInterrupt):
            ctrl_c_twice.start()
            square @ square                  # Python runs no handler before it returns
            ctrl_c_twice.join()
            square.sum()                     # handlers run here at the latest
    finally:
        ctrl_c_twice.join()
        stop.restore()
    assert stop.sigints == 2


# --------------------------------------------------------------------------- slow: many signals

@pytest.mark.slow
def test_many_sigterms_in_a_row_then_bit_identical(data_root, tmp_path):
    """SIGTERM the same run again and again, as soon as each resume logs its first step, until it
    completes (24 steps); the result equals the uninterrupted run. Where each stop lands depends on
    the machine: the signal comes up to 20 ms after the log line, and a fast CPU finishes one or
    two more steps in that time, so a run has 8 to 22 stops."""
    steps = SHORT + ["train.epochs=6"]
    reference = tmp_path / "whole"
    train(config.load(None, steps), data_root, reference, quiet=True)
    recipe = write_recipe(tmp_path / "long.yaml", steps)
    seed = random.SystemRandom().randrange(1 << 30)
    run, rng, done, stops = tmp_path / "run", random.Random(seed), 0, []
    args = ["train", "--config", recipe, "--data", data_root, "--run-dir", run]
    while done < 22:
        step = min(done + 1, 22)
        code, _, err = sigterm_after_step(args, step, rng.uniform(0.0, 0.02))
        assert code == exits.STOPPED, f"(seed {seed}, stops so far {stops})\n{err}"
        done = int(re.search(r"after step (\d+)", err).group(1))
        stops.append(done)
        args = ["train", "--data", data_root, "--run-dir", run]
    assert alexnet(args).returncode == 0
    assert len(stops) >= 8, f"only {len(stops)} SIGTERM stops, at steps {stops} (seed {seed})"
    print(f"seed {seed}: {len(stops)} SIGTERM stops, at steps {stops}")   # shown if the next fails
    assert_same_run(run, reference)


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
