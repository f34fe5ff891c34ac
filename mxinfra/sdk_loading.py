"""A target's cloud SDK, imported in a worker thread while the engine works on what is already declared.

The Python SDK sends no registration until the program's top-level code returns or awaits, and a cloud
SDK's resource modules take a third of a second (pulumi_kubernetes) to seconds (pulumi_aws) to import.
MendixEnvironment declares its release intent first and builds the rest in a coroutine that waits here:
meanwhile the event loop registers the intent, so the engine starts the records' provider and writes the
intent while this thread imports (issue 18). An import holds the GIL for most of its time, but the event
loop needs it only for moments, and the engine and its plugins run in processes of their own.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import weakref
from collections.abc import Sequence

SWITCH_INTERVAL = 0.0005  # seconds (Python's default: 0.005)

# One import job per event loop (one per program run; tests run many programs in one process), so that
# the environments of a program share it instead of importing the same modules in several threads.
_jobs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, ...], asyncio.Future[None]]] = weakref.WeakKeyDictionary()


def load(modules: Sequence[str]) -> None:
    """Import and run each of `modules`.

    The SDKs register their packages as lazy modules (pulumi._utils.lazy_import), which run on the first
    access to an attribute other than the introspection ones (`__name__`, `__dict__`...): an import alone
    would leave the work to the event loop. A lazy module is not safe to run from two threads at once,
    which is why MendixEnvironment touches no SDK module before this returns."""
    interval = sys.getswitchinterval()
    # An import holds the GIL nearly all the time: a thread that wants it waits a switch interval (5 ms)
    # each time, and the event loop needs it a dozen times for every registration it sends. A short
    # interval while the SDK loads lets the intents out at once (issue 18's traces: 0.33 s at N = 5).
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        _load(modules)
    finally:
        sys.setswitchinterval(interval)


def _load(modules: Sequence[str]) -> None:
    for name in modules:
        parts = name.split(".")
        # each package on the way too, as a plain import runs it (`a.b.c` imported leaves a lazy `a.b`)
        for end in range(1, len(parts) + 1):
            getattr(importlib.import_module(".".join(parts[:end])), "__mxinfra_load__", None)


async def sdk_loaded(modules: Sequence[str]) -> None:
    """Return once `modules` are imported: the first caller on this event loop imports them in a worker thread."""
    if not modules:
        return
    key = tuple(modules)
    loop = asyncio.get_running_loop()
    jobs = _jobs.setdefault(loop, {})
    job = jobs.get(key)
    if job is None:
        job = jobs[key] = loop.run_in_executor(None, load, key)
    await asyncio.shield(job)
