"""gunicorn settings of the ``web`` process (``gunicorn -c python:gateway.gunicorn_config``).

Only what Prometheus's multiprocess mode needs: when ``PROMETHEUS_MULTIPROC_DIR``
is set, a gunicorn worker that exits has its live gauges dropped from the
shared directory (its counters stay, as they should). Everything else stays on
the command line.
"""

from __future__ import annotations

import os


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
