"""`python tests/prep_killed.py K ARGS` = `python -m data_prep ARGS`, killed with SIGKILL (a hard
death: no handler, no cleanup) once K chunks are finished (tests of prep's resume)."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_prep import __main__ as prep, pipeline  # noqa: E402


class KilledProgress(pipeline.Progress):
    finished = 0

    def update(self, n):
        super().update(n)
        KilledProgress.finished += 1
        if KilledProgress.finished >= int(sys.argv[1]):
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    pipeline.Progress = KilledProgress
    raise SystemExit(prep.main(sys.argv[2:]))
