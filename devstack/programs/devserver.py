"""devserver: a development server supervisor that reloads at the speed of your code.

Self-contained (stdlib + uvicorn + watchfiles, Python 3.11+): it is bind-mounted into the API
container and run as a script, so it imports nothing from devstack. Two modes:

``devserver.py service.main:app --host 0.0.0.0 --port 8000 --watch /app/service``
    Binds the listening socket once (requests queue in the kernel during a reload instead of
    being refused), forks a fresh uvicorn server per code change (the old one is stopped
    gracefully first), and imports the heavy third-party modules once in the supervisor: the
    first server reports the non-project modules it imported and the supervisor imports them,
    so later servers only import the project's own code. The supervisor never imports the
    project's code. While the code cannot be imported or the app cannot start (SyntaxError,
    ImportError, an exception in the lifespan), every HTTP request gets an immediate 503 with
    the exception, its file and line and the last frames (``--no-traceback`` hides them), and
    the header ``X-Devstack-Code-Error: <one-line summary>``.

``devserver.py --command 'celery -A service.worker worker' --watch /app/service``
    Runs the command, restarts it on change; when it exits with an error (a Python traceback
    or a non-zero code) the summary is recorded. A Python program of this interpreter
    (``python -m MOD ...``, ``python SCRIPT ...`` or a console script such as ``celery``) runs
    in a forked child with runpy, so what the supervisor imported (``--preload``, or what the
    process that runs the supervisor preloaded: devstack's gate.py) is not imported again on
    each restart; any other command is exec'd.

In both modes the one-line summary (``SyntaxError: ... (service/routes/meta.py:74)``) is
written to ``--error-file`` while the code is broken and removed once it works again.
SIGTERM/SIGINT stop the child gracefully and exit 0. Never writes bytecode.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_options import parse_args
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_options import parse_args  # type: ignore[no-redef,import-not-found]

try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_runner import PROGRAMS_DIR
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_runner import PROGRAMS_DIR  # type: ignore[no-redef,import-not-found]

try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_supervisor import Supervisor
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_supervisor import Supervisor  # type: ignore[no-redef,import-not-found]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python devserver.py APP ...`` or ``python devserver.py --command ...``."""
    # Run as a script, our own directory is sys.path[0]: keep it from shadowing anything.
    if sys.path and os.path.realpath(sys.path[0] or ".") == PROGRAMS_DIR:
        del sys.path[0]
    sys.dont_write_bytecode = True
    options = parse_args(sys.argv[1:] if argv is None else argv)
    return Supervisor(options).run()


if __name__ == "__main__":
    sys.exit(main())
