"""Run blocking calls in daemon threads so a call that never returns cannot block exit.

NVML calls cannot be cancelled or given a timeout. A ThreadPoolExecutor's workers are joined at
interpreter exit (and by asyncio.run on shutdown), so one hung call would hang the exporter's exit; a
fresh daemon thread per call does not, and single-flight callers keep their number at one.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Callable, TypeVar

T = TypeVar("T")


def run_in_daemon_thread(fn: Callable[[], T], name: str) -> "asyncio.Future[T]":
    """Start `fn` in a new daemon thread; the returned future (of the running loop) gets its outcome."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result, error = fn(), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop closed while we were blocked; nobody is waiting any more
            pass

    threading.Thread(target=target, name=name, daemon=True).start()
    return future
