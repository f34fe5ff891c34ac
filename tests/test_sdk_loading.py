"""mxinfra.sdk_loading: a target's SDK imported and run for real, on the program's thread, with the event
loop running between two modules."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest
from pulumi._utils import lazy_import

from mxinfra import sdk_loading


@pytest.fixture
def sdk(tmp_path, monkeypatch):
    """A stand-in SDK package `mxinfra_test_sdk` with resource modules `a` and `b`, which record where and
    in which order they ran."""
    pkg = tmp_path / "mxinfra_test_sdk"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("RUNS = []\n")
    for m in ("a", "b"):
        (pkg / f"{m}.py").write_text(f"import threading\nimport mxinfra_test_sdk as p\np.RUNS.append(({m!r}, threading.current_thread().name))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ("mxinfra_test_sdk", "mxinfra_test_sdk.a", "mxinfra_test_sdk.b")
    for name in names:
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield "mxinfra_test_sdk"
    for name in names:
        sys.modules.pop(name, None)


def test_a_lazy_module_is_run_not_only_registered(sdk):
    # The SDKs register their packages lazily: importing one leaves its body for the first attribute access.
    import importlib

    importlib.import_module(sdk)
    lazy_import(f"{sdk}.a")
    assert type(sys.modules[f"{sdk}.a"]).__name__ == "_LazyModule"
    sdk_loading.load([f"{sdk}.a"], pump=False)
    assert type(sys.modules[f"{sdk}.a"]).__name__ == "module"
    assert sys.modules[sdk].RUNS == [("a", threading.current_thread().name)]  # on the caller's thread


def test_the_event_loop_runs_before_and_between_the_modules(sdk):
    order: list[str] = []

    async def registration(step: str) -> None:  # what a declared resource's registration does: await, then send
        await asyncio.sleep(0)
        order.append(step)

    async def program() -> None:
        asyncio.ensure_future(registration("sent"))
        sdk_loading.load([f"{sdk}.a", f"{sdk}.b"])  # synchronous, as in a program's top-level code
        order.extend(m for m, _ in sys.modules[sdk].RUNS)

    loop = asyncio.new_event_loop()  # not asyncio.run: it leaves the thread without an event loop, which the mock runtime wants
    try:
        loop.run_until_complete(program())
    finally:
        loop.close()
    assert order == ["sent", "a", "b"]


def test_modules_already_run_are_left_alone(sdk):
    sdk_loading.load([f"{sdk}.a"], pump=False)
    sdk_loading.load([f"{sdk}.a", f"{sdk}.b"], pump=False)
    assert [m for m, _ in sys.modules[sdk].RUNS] == ["a", "b"]


def test_what_is_ready_first_is_waited_for_but_never_long(sdk):
    order: list[str] = []

    async def program() -> float:
        loop = asyncio.get_running_loop()
        answered = loop.create_future()  # a registration's answer, a few milliseconds away
        loop.call_later(0.01, lambda: (order.append("answered"), answered.set_result("urn")))
        never = loop.create_future()  # one waiting on a resource being created: not waited for
        started = loop.time()
        sdk_loading.load([f"{sdk}.a"], ready=lambda: [answered, never])
        order.extend(m for m, _ in sys.modules[sdk].RUNS)
        return loop.time() - started

    loop = asyncio.new_event_loop()
    try:
        took = loop.run_until_complete(program())
    finally:
        loop.close()
    assert order == ["answered", "a"]
    assert took < sdk_loading.SETTLE_SECONDS + 0.5


def test_a_failed_registration_waited_for_leaves_no_second_report(sdk):
    # The SDK reports a failed registration itself; the wait must not add "Task exception was never retrieved".
    reports: list[dict] = []

    async def program() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reports.append(context))
        failed = loop.create_future()
        loop.call_later(0.01, lambda: failed.set_exception(RuntimeError("register failed")))

        async def urn() -> object:  # what `Output.future()` is: a coroutine awaiting the registration
            return await failed

        sdk_loading.load([f"{sdk}.a"], ready=lambda: [urn()])
        sdk_loading.load([f"{sdk}.b"], ready=lambda: [])  # nothing to wait for: no error either
        failed.exception()  # the failure's owner reads it, as the SDK does

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(program())
    finally:
        loop.close()
    import gc

    gc.collect()  # an unread task exception is reported when the task is collected
    assert reports == []
    assert [m for m, _ in sys.modules[sdk].RUNS] == ["a", "b"]
