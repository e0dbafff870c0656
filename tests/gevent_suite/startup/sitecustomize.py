"""Start-up of every Python process on the ferrovent side of the gevent-suite runner (tests/gevent_suite/runner.py).

The runner puts this directory on PYTHONPATH and sets FERROVENT_GEVENT_SUITE=ferrovent, so the test file's process
and every Python process it starts (tests re-run themselves, start servers and examples) get ferrovent as gevent
and the harness adapters before anything imports gevent. Any other sitecustomize on the path still runs.
"""

import importlib.machinery
import importlib.util
import os
import sys

if os.environ.get("FERROVENT_GEVENT_SUITE") == "ferrovent":
    import ferrovent_harness_adapters

    ferrovent_harness_adapters.install()


def _run_next_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    others = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


_run_next_sitecustomize()
