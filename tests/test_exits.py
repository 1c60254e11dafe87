"""data_prep/exits.py: the one map from an exception to an exit status and its line on stderr, and
every error class of the project on the side of the map it belongs to."""
import pytest

from data_prep import exits
from data_prep.interrupt import Interrupted
from data_prep.shards import FormatError, WrittenOnce
from experiments.real_data import LayoutError
from experiments.runner import RunsFailed
from paper_alexnet.run.checkpoint import CheckpointError
from paper_alexnet.config import ConfigError
from paper_alexnet.evaluate import EvaluationError
from paper_alexnet.run.preemption import Preempted
from paper_alexnet.run.preflight import StartError
from paper_alexnet.run.watchdog import NonFiniteLoss


def raising(err):
    def work():
        raise err
    return work


@pytest.mark.parametrize("err, code", [
    (StartError("x"), 2), (WrittenOnce("x"), 2), (LayoutError("x"), 2),
    (ConfigError("x"), 1), (FormatError("x"), 1), (CheckpointError("x"), 1),
    (EvaluationError("x"), 1), (RunsFailed("x"), 1), (NonFiniteLoss("x", 3, "loss"), 1),
    (OSError(28, "No space left on device"), 1),
    (Preempted("SIGTERM", 7), 75), (Interrupted("SIGINT"), 75), (KeyboardInterrupt(), 130),
])
def test_each_kind_of_error_has_its_status_and_one_line(err, code, capsys):
    assert exits.run("alexnet verb", raising(err)) == code
    err_lines = capsys.readouterr().err.splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("alexnet verb: ")


def test_an_interrupt_is_a_stop_that_except_exception_does_not_swallow():
    with pytest.raises(KeyboardInterrupt):
        try:
            raise Interrupted("SIGTERM")
        except Exception:           # what a worker loop writes
            pytest.fail("Interrupted was caught as an Exception")
    assert str(Interrupted("SIGTERM")) == "stopped by SIGTERM"


def test_hints_quiet_and_the_commands_own_kinds(capsys):
    hints = {OSError: lambda: "the newest checkpoint is intact", KeyboardInterrupt: "resume"}
    assert exits.run("p", raising(OSError("disk full")), hints=hints) == exits.FAILED
    assert capsys.readouterr().err == "p: disk full; the newest checkpoint is intact\n"
    assert exits.run("p", raising(KeyboardInterrupt()), hints=hints,
                     aborted="aborted by a second Ctrl-C") == exits.ABORTED
    assert capsys.readouterr().err == "p: aborted by a second Ctrl-C; resume\n"
    assert exits.run("p", raising(Preempted("SIGTERM", 3)), quiet=(Preempted,)) == 75
    assert capsys.readouterr().err == ""
    assert exits.run("p", raising(ValueError("bad size")), usage=(ValueError,)) == exits.USAGE
    assert exits.run("p", raising(ValueError("bad")), failures=(ValueError,)) == exits.FAILED
    assert exits.run("p", lambda: None) == exits.DONE and exits.run("p", lambda: 3) == 3


def test_an_exception_the_map_does_not_know_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        exits.run("p", lambda: 1 / 0)
    with pytest.raises(ValueError):                 # a ValueError is a bug unless a command says
        exits.run("p", raising(ValueError("x")))
