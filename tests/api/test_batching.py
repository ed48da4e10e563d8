"""Dynamic batching: coalescing, the bounded queue (429), deadlines (503 late / 504) and model failures (503)."""
from __future__ import annotations

import asyncio
import json

import pytest

from .conftest import FaultyBackend, GatedBackend, sample_value

VERSION = {"model": "minilm", "version": "1"}


async def _wait_until(predicate, what: str, attempts: int = 2000) -> None:
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def test_concurrent_requests_form_batches(make_client):
    """Requests queued behind a busy instance share batches; the first window is taken ahead with at
    most half of what is in the server (the other half queues, so the instance never idles)."""
    client = await make_client(wrap=GatedBackend, batching={"max_batch_size": 16, "max_queue_delay_ms": 50})
    backend = client.backend
    backend.arm()
    first = asyncio.ensure_future(client.post("/v1/search", json={"query": "first", "k": 2}))
    await _wait_until(backend.entered.is_set, "the worker to start")
    batcher = client.state.get("minilm", "1").batcher
    rest = [asyncio.ensure_future(client.post("/v1/search", json={"query": f"cordless drill {i}", "k": 2}))
            for i in range(12)]
    # One window is taken ahead (1..6 texts, by when the collector saw them); the rest wait for it.
    await _wait_until(lambda: batcher.depth == 12, "12 texts waiting")
    assert 1 <= len(batcher._ahead_window) <= 6   # the rest is queued behind it
    backend.gate.set()
    responses = await asyncio.gather(first, *rest)
    assert [r.status for r in responses] == [200] * 13
    assert backend.calls[0] == 1 and sum(backend.calls) == 13
    assert 3 <= len(backend.calls) <= 5 and max(backend.calls) >= 5, backend.calls
    reg = client.metrics.registry
    assert sample_value(reg, "inference_batch_size_count", VERSION) == len(backend.calls)
    assert sample_value(reg, "inference_batch_size_sum", VERSION) == 13
    assert sample_value(reg, "inference_compute_duration_seconds_count", VERSION) == len(backend.calls)


async def test_model_instances_run_batches_concurrently(make_client):
    """With two instances, what waits is spread over both and the two batches run at the same time."""
    client = await make_client(wrap=GatedBackend,
                               batching={"max_batch_size": 8, "max_queue_delay_ms": 5000, "instances": 2})
    backend = client.backend
    batcher = client.state.get("minilm", "1").batcher
    assert batcher.instances == 2
    backend.arm()
    requests = [asyncio.ensure_future(client.post("/v1/search", json={"query": f"oak table {i}", "k": 2}))
                for i in range(8)]
    # The collector dispatches once 8 texts (a full batch) wait, as two halves for the two free
    # instances; both enter encode() while the gate is closed: two batches in flight at once.
    await _wait_until(lambda: len(backend.calls) == 2, "two concurrent batches")
    assert batcher.depth == 0 and sorted(backend.calls) == [4, 4]
    backend.gate.set()
    assert [r.status for r in await asyncio.gather(*requests)] == [200] * 8
    assert sample_value(client.metrics.registry, "inference_batch_size_sum", VERSION) == 8


@pytest.mark.parametrize("pipeline", [True, False])
async def test_busy_instances_get_their_next_window_ahead_once_a_unit_waits(make_client, pipeline):
    """Pipelined: with both instances busy on 8 texts, the third text to wait makes a unit (11 texts in
    the server over 2 instances + 1) and is taken ahead; without it, texts wait for a full window
    (or the queue delay)."""
    client = await make_client(wrap=GatedBackend, batching={"max_batch_size": 8, "max_queue_delay_ms": 1000,
                                                            "instances": 2, "pipeline": pipeline})
    backend, batcher = client.backend, client.state.get("minilm", "1").batcher
    backend.arm()
    post = lambda q: asyncio.ensure_future(client.post("/v1/search", json={"query": q, "k": 2}))  # noqa: E731
    running = [post(f"oak table {i}") for i in range(8)]
    await _wait_until(lambda: len(backend.calls) == 2, "both instances busy")
    waiting = []
    for i in range(3):
        waiting.append(post(f"walnut desk {i}"))
        await _wait_until(lambda n=len(waiting): batcher.depth == n, "texts waiting")
    await asyncio.sleep(0.05)   # the collector has seen all three
    if pipeline:
        assert batcher._ahead == 1 and len(batcher._ahead_window) == 3 and not batcher._pending
    else:
        assert batcher._ahead == 0 and len(batcher._pending) == 3
    backend.gate.set()
    assert [r.status for r in await asyncio.gather(*running, *waiting)] == [200] * 11
    # Pipelined, the 3 ran as one window the moment an instance was free; else they waited for the
    # queue delay and were then split between the two free instances.
    assert sorted(backend.calls) == ([3, 4, 4] if pipeline else [1, 2, 4, 4])
    await _wait_until(lambda: batcher._running == 0, "the windows to finish")
    assert batcher._ahead_window is None and batcher.depth == 0


async def test_auto_instances_follow_the_device(shared_backend):
    from inference_server.config import BatchingConfig
    from inference_server.models.backend import MAX_AUTO_INSTANCES, usable_cpu_count
    from inference_server.serving.batching import resolve_instances

    assert resolve_instances(BatchingConfig(), shared_backend) == 1  # the default: lowest latency
    assert resolve_instances(BatchingConfig(instances=3), shared_backend) == 3
    assert resolve_instances(BatchingConfig(instances=None), shared_backend) == min(usable_cpu_count(), MAX_AUTO_INSTANCES)
    gpu_like = type("GpuLike", (), {"device": "cuda:0"})()
    assert resolve_instances(BatchingConfig(instances=None), gpu_like) == 1


async def test_batches_group_similar_token_lengths(make_client):
    """A window is sorted by token length before it is cut into batches (less padding)."""
    client = await make_client(wrap=GatedBackend, batching={"max_batch_size": 2, "max_queue_delay_ms": 50})
    backend = client.backend
    seen: list[list[str]] = []
    inner_encode = backend.inner.encode

    def spy(texts):
        seen.append(list(texts))
        return inner_encode(texts)

    backend.inner = type("Spy", (), {"encode": staticmethod(spy),
                                     "token_lengths": backend.inner.token_lengths})()
    long_a = "stainless steel cordless drill with two batteries and a charger in a case"
    long_b = "heavy duty cordless hammer drill with brushless motor and three speed gearbox"
    # One request's four texts, alternating short/long, queue at once: one window of 4 (2 batches).
    items = [{"id": "a", "title": long_a}, {"id": "r", "title": "rug"}, {"id": "b", "title": long_b}]
    resp = await client.post("/v1/rank", json={"query": "lamp", "items": items})
    assert resp.status == 200
    assert {frozenset(batch) for batch in seen[-2:]} == {frozenset({"lamp", "rug"}), frozenset({long_a, long_b})}


async def test_full_queue_answers_429_with_retry_after(make_client):
    client = await make_client(wrap=GatedBackend, batching={"max_batch_size": 1, "max_queue_size": 2})
    backend = client.backend
    backend.arm()
    first = asyncio.ensure_future(client.post("/v1/search", json={"query": "a"}))
    await _wait_until(backend.entered.is_set, "the worker to start")
    batcher = client.state.get("minilm", "1").batcher
    queued = [asyncio.ensure_future(client.post("/v1/search", json={"query": q})) for q in ("b", "c")]
    await _wait_until(lambda: batcher.depth == 2, "a full queue")
    rejected = await client.post("/v1/search", json={"query": "d"})
    assert rejected.status == 429
    assert int(rejected.headers["Retry-After"]) >= 1
    assert (await rejected.json())["error"]["code"] == "queue_full"
    # A rank request with more texts than the whole queue holds is refused the same way.
    too_many = await client.post("/v1/rank", json={"query": "q", "items": [{"id": str(i), "title": "t"} for i in range(3)]})
    assert too_many.status == 429
    backend.gate.set()
    assert [r.status for r in await asyncio.gather(first, *queued)] == [200, 200, 200]
    reg = client.metrics.registry
    assert sample_value(reg, "inference_rejected_requests_total", {"endpoint": "search", "reason": "queue_full"}) == 1
    assert sample_value(reg, "inference_rejected_requests_total", {"endpoint": "rank", "reason": "queue_full"}) == 1
    # Queue gauges are exported for saturation = depth / capacity.
    assert sample_value(reg, "inference_queue_capacity", VERSION) == 2
    assert sample_value(reg, "inference_queue_depth", VERSION) == 0


async def test_queued_request_that_cannot_start_in_time_is_shed_before_its_deadline(make_client, tmp_path):
    """Still queued when its time runs out: 503 `overloaded` (shed `late`) before its deadline, not a
    504 at it; a request whose batch is running when the deadline passes gets 504, counted as a timeout."""
    deadline_ms = 1000
    client = await make_client(wrap=GatedBackend, server={"request_timeout_ms": deadline_ms},
                               batching={"max_batch_size": 1})
    backend = client.backend
    backend.arm()
    running = asyncio.ensure_future(client.post("/v1/search", json={"query": "holds the worker"}))
    await _wait_until(backend.entered.is_set, "the worker to start")
    queued = await client.post("/v1/search", json={"query": "waits behind it"})
    assert queued.status == 503
    error = (await queued.json())["error"]
    assert error["code"] == "overloaded" and "less than the expected compute" in error["message"]
    assert "Retry-After" in queued.headers
    blocked = await running
    assert blocked.status == 504  # deadline passed while its batch was running
    assert "did not finish" in (await blocked.json())["error"]["message"]
    backend.gate.set()
    reg = client.metrics.registry
    assert sample_value(reg, "inference_rejected_requests_total", {"endpoint": "search", "reason": "deadline_exceeded"}) == 1
    assert sample_value(reg, "inference_admission_shed_total", {**VERSION, "reason": "late"}) == 1
    assert sample_value(reg, "inference_model_errors_total", {**VERSION, "reason": "timeout"}) == 1
    # The shed request never reaches the model, and was answered before its deadline (server-side).
    await _wait_until(lambda: client.state.get("minilm", "1").batcher.depth == 0, "empty queue")
    assert backend.calls == [1]
    records = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    shed = [r for r in records if r["status"] == 503]
    assert len(shed) == 1 and shed[0]["total_ms"] < deadline_ms, shed


async def test_model_exception_and_non_finite_output_are_503_and_counted(make_client):
    client = await make_client(wrap=FaultyBackend)
    resp = await client.post("/v1/search", json={"query": "EXPLODE please"})
    assert resp.status == 503 and "Retry-After" in resp.headers
    assert (await resp.json())["error"]["code"] == "model_error"
    resp = await client.post("/v1/rank", json={"query": "fine", "items": [{"id": "x", "title": "NANNAN"}]})
    assert resp.status == 503
    assert "non-finite" in (await resp.json())["error"]["message"]
    reg = client.metrics.registry
    assert sample_value(reg, "inference_model_errors_total", {**VERSION, "reason": "exception"}) == 1
    assert sample_value(reg, "inference_model_errors_total", {**VERSION, "reason": "non_finite_output"}) == 1
    assert sample_value(reg, "inference_rejected_requests_total", {"endpoint": "search", "reason": "model_error"}) == 1
    # The server keeps serving.
    assert (await client.post("/v1/search", json={"query": "hammer"})).status == 200


async def test_batching_disabled_runs_one_text_per_batch(make_client):
    client = await make_client(batching={"enabled": False})
    responses = await asyncio.gather(*[client.post("/v1/search", json={"query": f"rug {i}"}) for i in range(6)])
    assert all(r.status == 200 for r in responses)
    reg = client.metrics.registry
    assert sample_value(reg, "inference_batch_size_count", VERSION) == 6
    assert sample_value(reg, "inference_batch_size_sum", VERSION) == 6
