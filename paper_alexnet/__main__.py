"""`python -m paper_alexnet <verb>` is the same as `alexnet <verb>`."""
from paper_alexnet.app.cli import main

raise SystemExit(main())
