"""A target's cloud SDK, imported while the engine already works on what the program declared before it.

The Python SDK sends no registration while the program's top-level code runs (unless something runs the
event loop meanwhile, as a synchronous invoke does), and a cloud SDK's resource modules take a third of a
second (pulumi_kubernetes) to seconds (pulumi_aws) to import. MendixEnvironment
declares its release intent first, then has `load` import the target's modules one at a time, running
the event loop between two of them: the intent's registration goes out meanwhile, so the engine starts
the records' provider and writes the intent while the SDK loads (issue 18).

All of it on the program's own thread. The SDKs register their packages as lazy modules
(pulumi._utils.lazy_import), which run on the first access to an attribute and are not safe to run from
two threads at once: a worker thread importing them raced any resource of the user's whose registration
touched one meanwhile (found by review). The program stays synchronous, as the SDK's own synchronous
invokes keep it: the loop runs in between (`_sync_await`, which they use), and whatever was declared
keeps its order, its dependencies and its errors.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Awaitable, Callable, Sequence

# Event-loop iterations between two modules: a registration's few awaits. A guess with room to spare, not a
# bound: what is not sent at one module boundary is at the next (tests/test_components.py gives six).
PUMPS = 16
# How long the program waits for its first registrations before it loads: their answers take milliseconds;
# one that waits on a user's resource being created is not waited for.
SETTLE_SECONDS = 0.05


def _pump() -> None:
    """Run the event loop for a few iterations: what was declared moves on (registrations are sent, answers taken)."""
    from pulumi.runtime.sync_await import _sync_await

    for _ in range(PUMPS):
        _sync_await(asyncio.sleep(0))


def _run(name: str) -> None:
    """Import `name` and run it, with each package on the way (as a plain import runs them)."""
    parts = name.split(".")
    for end in range(1, len(parts) + 1):
        # an attribute other than the introspection ones (`__name__`, `__dict__`...) runs a lazy module
        getattr(importlib.import_module(".".join(parts[:end])), "__mxinfra_load__", None)


def _ran(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and type(module).__name__ != "_LazyModule"


def _settle(ready: Sequence[Awaitable[object]]) -> None:
    """Run the event loop until `ready` are done, for at most SETTLE_SECONDS."""
    from pulumi.runtime.sync_await import _sync_await

    tasks = [asyncio.ensure_future(r) for r in ready]
    for task in tasks:
        # Whatever ends a task left waiting here (its registration failing) is the SDK's to report, not
        # this wait's: read and dropped, never a second traceback. Not cancelled: `Output.future()` awaits the
        # output's shared data, which cancelling would cancel for everyone.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def settled() -> None:
        await asyncio.wait(tasks, timeout=SETTLE_SECONDS)

    _sync_await(settled())


def load(modules: Sequence[str], ready: Callable[[], Sequence[Awaitable[object]]] | None = None, pump: bool = True) -> None:
    """Import and run each of `modules` not run yet, running the event loop before each (`pump`) so that the
    engine gets what the program declared so far while they load.

    `ready`: what the program waits for first (at most SETTLE_SECONDS), e.g. its component's URN (called only
    when something is loaded, so that no coroutine is made for nothing): a registration waits for its
    parent's, and each module takes a tenth of a second, which the registrations would otherwise wait for at
    each step of that chain."""
    modules = [m for m in modules if not _ran(m)]
    waited = list(ready()) if pump and modules and ready is not None else []
    if waited:
        _settle(waited)
    for name in modules:
        if pump:
            _pump()
        _run(name)
    if pump and modules:
        _pump()
