"""Faults under torchrun (2 CPU processes, gloo; RELIABILITY.md): crashes, restarts, dead ranks,
an infinite gradient on one rank, a signal to one rank or to torchrun itself. Faults are injected
with signals or with the tests' fault hook (tests/fault_hook.py: ALEXNET_FAULT in the child,
which runs tests/faulty.py). All slow."""
import re
import signal
import subprocess
import sys
import time

import pytest

from faults import REPO, SMALL_NET, assert_same_run, child_env, torchrun, write_recipe
from paper_alexnet.run import checkpoint

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
    env = child_env(**({"ALEXNET_FAULT": fault} if fault else {}))
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
