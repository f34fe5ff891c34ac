"""mxinfra.sdk_loading: a target's SDK imported in a worker thread, run for real, once per program."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest
from pulumi._utils import lazy_import

from mxinfra import sdk_loading


@pytest.fixture
def sdk(tmp_path, monkeypatch):
    """A stand-in SDK package `mxinfra_test_sdk` with a resource module `res`, which records where and how
    it ran (the thread, the switch interval) each time it runs."""
    pkg = tmp_path / "mxinfra_test_sdk"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("RUNS = []\n")
    (pkg / "res.py").write_text(
        "import sys, threading\nimport mxinfra_test_sdk as p\n"
        "p.RUNS.append((threading.current_thread().name, sys.getswitchinterval()))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("mxinfra_test_sdk", "mxinfra_test_sdk.res"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield "mxinfra_test_sdk"
    for name in ("mxinfra_test_sdk", "mxinfra_test_sdk.res"):
        sys.modules.pop(name, None)


def test_a_lazy_module_is_run_not_only_registered(sdk):
    # The SDKs register their packages lazily: importing one leaves its body for the first attribute access.
    import importlib

    importlib.import_module(sdk)
    lazy_import(f"{sdk}.res")
    assert type(sys.modules[f"{sdk}.res"]).__name__ == "_LazyModule"
    sdk_loading.load([f"{sdk}.res"])
    assert type(sys.modules[f"{sdk}.res"]).__name__ == "module"
    assert len(sys.modules[sdk].RUNS) == 1


def test_the_gil_is_handed_over_often_while_loading_and_the_interval_restored(sdk):
    before = sys.getswitchinterval()
    sdk_loading.load([f"{sdk}.res"])
    ((_, during),) = sys.modules[sdk].RUNS
    assert during == pytest.approx(sdk_loading.SWITCH_INTERVAL) and during < before
    assert sys.getswitchinterval() == before


def test_the_environments_of_a_program_share_one_job_off_the_event_loop(sdk):
    async def program() -> None:
        await asyncio.gather(*(sdk_loading.sdk_loaded([f"{sdk}.res"]) for _ in range(5)))

    loop = asyncio.new_event_loop()  # not asyncio.run: it leaves the thread without an event loop, which the mock runtime wants
    try:
        loop.run_until_complete(program())
    finally:
        loop.close()
    runs = sys.modules[sdk].RUNS
    assert len(runs) == 1 and runs[0][0] != threading.main_thread().name
