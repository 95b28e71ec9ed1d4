"""Fixtures for the store tests.

`store_factory` is the list of backends every backend-neutral test runs against. Calling it
opens a Store: `store_factory()` opens the test's default storage, `store_factory("other")`
a separate one; calling it again with the same name after close() reopens the same data
(that is how persistence is tested). A new backend (etcd) joins by adding one entry to
BACKENDS.

Tests here may be `async def`: they run on a uvloop event loop (like the servers), with a
hang guard so a broken watch fails the test instead of stalling the suite.
"""
from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Callable

import pytest
import uvloop

from tinykube.store.base import Store
from tinykube.store.sqlite import SqliteStore

HANG_GUARD_SECONDS = 60


def _sqlite_backend(tmp_path: Path) -> Callable[..., Store]:
    def factory(name: str = "default", **options) -> Store:
        return SqliteStore(tmp_path / f"{name}.db", **options)
    return factory


BACKENDS: dict[str, Callable[[Path], Callable[..., Store]]] = {
    "sqlite": _sqlite_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
def store_factory(request, tmp_path) -> Callable[..., Store]:
    return BACKENDS[request.param](tmp_path)


def run_async(coro_fn, *args, **kwargs):
    """Run an async test body on a fresh uvloop loop."""
    async def guarded():
        return await asyncio.wait_for(coro_fn(*args, **kwargs), HANG_GUARD_SECONDS)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(guarded())


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    run_async(fn, **kwargs)
    return True
