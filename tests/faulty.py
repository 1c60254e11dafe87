"""`python tests/faulty.py ARGS` = `python -m paper_alexnet ARGS` with the fault named by the
environment variable ALEXNET_FAULT injected into every training run (tests/fault_hook.py); the
child processes of the fault tests run this."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fault_hook  # noqa: E402  (this folder, sys.path[0] as a script)
from paper_alexnet import train  # noqa: E402
from paper_alexnet.app import cli  # noqa: E402

if __name__ == "__main__":
    fault = fault_hook.from_env(int(os.environ.get("RANK", "0")))
    if fault is not None:
        train.train = fault_hook.with_fault(train.train, fault_hook.Inject(fault))
    raise SystemExit(cli.main(sys.argv[1:]))
