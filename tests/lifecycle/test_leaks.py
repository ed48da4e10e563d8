"""Replacing, reloading and unloading versions frees what they held: batcher tasks, worker threads, memory."""
from __future__ import annotations

import asyncio
import gc
import threading

import psutil

from tests.lifecycle.test_versions import admin, search

CYCLES = 20


def _footprint() -> tuple[int, int, int]:
    gc.collect()
    return threading.active_count(), len(asyncio.all_tasks()), psutil.Process().memory_info().rss


async def test_load_reload_unload_20_times_keeps_threads_tasks_and_memory_flat(lifecycle_client):
    client = await lifecycle_client()
    base = "/v1/admin/models/minilm/versions/2"

    async def cycle() -> None:
        await admin(client, "POST", f"{base}/load")
        await admin(client, "POST", f"{base}/reload")
        await search(client)
        await admin(client, "POST", f"{base}/unload")
        await client.state.wait_retired()

    for _ in range(2):                      # warm-up: caches, thread pools created on first use
        await cycle()
    threads, tasks, rss = _footprint()
    for _ in range(CYCLES):
        await cycle()
    threads_after, tasks_after, rss_after = _footprint()
    # A leak holds at least a worker thread and a batcher task per cycle (20 over the run); a slack of 2
    # absorbs pools that grow lazily on a busy machine (the default executor), not a leak.
    assert threads_after - threads <= 2, (threads, threads_after)
    assert tasks_after - tasks <= 2, (tasks, tasks_after)
    assert rss_after - rss < 64 * 2**20, f"RSS grew by {(rss_after - rss) / 2**20:.1f} MiB over {CYCLES} cycles"
    assert client.state.get("minilm", "2") is None


async def test_loading_over_a_failed_instance_closes_it(lifecycle_client):
    client = await lifecycle_client()
    await admin(client, "POST", "/v1/admin/models/minilm/versions/2/load")
    failed = client.state.get("minilm", "2")
    failed.state, failed.error = "failed", "periodic golden check failed (simulated)"   # still holds its batcher
    assert failed.batcher is not None
    await admin(client, "POST", "/v1/admin/models/minilm/versions/2/load")
    await client.state.wait_retired()
    assert client.state.get("minilm", "2") is not failed
    assert failed.batcher is None and failed.backend is None and failed.searcher is None
