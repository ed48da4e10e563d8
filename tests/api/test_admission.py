"""Admission control: the window-cost fit, the admit / too-late decisions, and a batcher under overload
that sheds early (503 + Retry-After) instead of answering late (504) or computing for nobody."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Sequence

import numpy as np
import pytest

from inference_server.config import AdmissionConfig
from inference_server.serving.admission import AdmissionController, Overloaded, WindowCostModel

from .conftest import DelegatingBackend, sample_value

VERSION = {"model": "minilm", "version": "1"}


def test_window_cost_fit_recovers_overhead_and_per_text_cost():
    model = WindowCostModel(decay=0.95)
    for n in (1, 4, 8, 16, 32, 2, 64, 128) * 3:
        model.observe(n, 0.01 + 0.002 * n)
    assert model.overhead == pytest.approx(0.01, rel=1e-6) and model.per_text == pytest.approx(0.002, rel=1e-6)
    full = WindowCostModel(decay=0.9)           # all windows full: a line through the origin
    for _ in range(5):
        full.observe(128, 1.28)
    assert full.cost(128) == pytest.approx(1.28) and full.cost(64) == pytest.approx(0.64)


def test_admit_predicts_wait_from_busy_instances_and_the_queue():
    ctl = AdmissionController(AdmissionConfig(min_windows=1, deadline_margin=0.0, max_queue_wait_ms=10_000),
                              instances=1, window_size=10, retry_after_s=1)
    assert ctl.admit(1, 500, now=0.0, deadline=0.001) is None            # not calibrated: no prediction
    ctl.window_finished(ctl.window_started(10, 0.0), 10, 1.0)            # 0.1 s per text
    ctl.window_started(10, now=0.0)                                      # busy until 1.0
    # 25 texts ahead: windows of 10, 10, 5 after the running one -> starts at 1 + 1 + 1 + 0.5 = 3.5
    assert ctl.admit(1, 25, now=0.0, deadline=10.0) == pytest.approx(3.5)
    with pytest.raises(Overloaded) as info:                               # 3.5 s wait + its window > 3 s
        ctl.admit(1, 25, now=0.0, deadline=3.0)
    assert info.value.reason == "deadline" and info.value.status == 503 and info.value.retry_after == 4
    tight = AdmissionController(AdmissionConfig(min_windows=1, max_queue_wait_ms=500), instances=1,
                                window_size=10, retry_after_s=1)
    tight.window_finished(tight.window_started(10, 0.0), 10, 1.0)
    with pytest.raises(Overloaded) as info:
        tight.admit(1, 10, now=0.0, deadline=100.0)
    assert info.value.reason == "queue_time"
    # the answer is due 10 % of the time left before the deadline; a 1 s window needs 1 s until then
    assert tight.finish_by(0.0, 1.2) == pytest.approx(1.08)
    assert tight.too_late(10, now=0.0, finish_by=0.99) and not tight.too_late(10, now=0.0, finish_by=1.01)


class SlowBackend(DelegatingBackend):
    """The real model plus a fixed cost per text, so a window's compute is predictable and dominant."""

    PER_TEXT_S = 0.04

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = super().encode(texts)
        time.sleep(self.PER_TEXT_S * len(texts))
        return out


async def test_overload_is_shed_early_and_admitted_requests_meet_their_deadline(make_client, tmp_path):
    deadline_ms = 1000
    client = await make_client(wrap=SlowBackend, server={"request_timeout_ms": deadline_ms},
                               batching={"max_batch_size": 4, "window_batches": 1, "max_queue_delay_ms": 1})
    for rnd in range(3):        # calibrate on full windows (4 texts), as under load: a window of one text
        warm = await asyncio.gather(*[client.post("/v1/search", json={"query": f"warm {rnd} {i}", "k": 2})
                                      for i in range(4)])     # over-states the cost per text on a busy CPU
        assert [r.status for r in warm] == [200] * 4

    async def one(i: int):
        began = time.perf_counter()
        resp = await client.post("/v1/search", json={"query": f"cordless drill {i}", "k": 2})
        body = await resp.json()
        return resp.status, time.perf_counter() - began, body, resp.headers.get("Retry-After")

    results = await asyncio.gather(*[one(i) for i in range(80)])   # ~6x what fits in one deadline
    statuses = [r[0] for r in results]
    assert set(statuses) <= {200, 503}, statuses                      # never a late 504
    ok = [r for r in results if r[0] == 200]
    shed = [r for r in results if r[0] == 503]
    assert len(ok) >= 6 and len(shed) >= 20, (len(ok), len(shed))
    # admitted ones finish in time: server-side time from the request log (the in-process client
    # shares the event loop, so its own clock also counts waiting for its turn)
    await asyncio.sleep(0.5)
    records = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    served = [r["total_ms"] for r in records if r["status"] == 200]
    assert len(served) == len(ok) + 12 and max(served) <= deadline_ms * 1.1, max(served)
    assert all(r[2]["error"]["code"] == "overloaded" and r[3] for r in shed)
    assert max(r[1] for r in shed) < 0.5 * deadline_ms / 1000              # shed at once, not after waiting
    reg = client.metrics.registry
    shed_total = sum(sample_value(reg, "inference_admission_shed_total", {**VERSION, "reason": reason})
                     for reason in ("deadline", "queue_time", "late", "queue_full"))
    assert shed_total == len(shed)
    assert sample_value(reg, "inference_admission_admitted_total", VERSION) == len(ok) + 12
    assert sample_value(reg, "inference_admission_predicted_wait_seconds_count", VERSION) >= len(ok)
    assert sample_value(reg, "inference_wasted_compute_seconds_total", VERSION) == 0
    assert sample_value(reg, "inference_model_errors_total", {**VERSION, "reason": "timeout"}) == 0


def test_lanes_chain_a_window_taken_ahead_behind_the_running_one():
    ctl = AdmissionController(AdmissionConfig(min_windows=1, max_queue_wait_ms=10_000), instances=1,
                              window_size=10, retry_after_s=1)
    ctl.window_finished(ctl.window_started(10, 0.0), 10, 1.0)           # 0.1 s per text
    running = ctl.window_started(10, now=0.0)                            # ends at 1.0
    ahead = ctl.window_started(10, now=0.0)                              # waits for it: ends at 2.0
    assert ctl.lanes(0.0) == [pytest.approx(2.0)] and ctl.predicted_start(0, 0.0) == pytest.approx(2.0)
    ctl.window_finished(running, 10, 1.0)
    ctl.window_began(ahead, 10, at=1.5)                                  # its instance was free late
    assert ctl.predicted_start(10, 1.5) == pytest.approx(3.5)            # 2.5, then a window of 10


def test_window_answers_each_batch_when_done_and_never_computes_a_late_text(shared_backend):
    from inference_server.serving.batching import _encode_window

    events: list[tuple] = []

    class Recording(DelegatingBackend):
        def encode(self, texts: Sequence[str]) -> np.ndarray:
            events.append(("encode", tuple(texts)))
            return super().encode(texts)

    texts = ["oak", "drill", "queen sheets white cotton", "a much longer product title with many words in it"]
    now = time.monotonic()
    finish_by = [now + 60, now + 60, now - 1, now + 60]      # "queen sheets" can no longer be answered in time
    _, batches = _encode_window(Recording(shared_backend), texts, [None] * 4, 2, None, finish_by,
                                lambda n: 0.05 * n,
                                lambda lengths, batch: events.append(("deliver", tuple(batch[0]), batch[3])))
    # Length-sorted batches of 2: each is handed back before the next is encoded; the late text is
    # reported (reason "late") and never reaches the model.
    assert [e[0] for e in events] == ["encode", "deliver", "deliver", "encode", "deliver"]
    assert events[0][1] == ("oak", "drill") and events[1][2] is None
    assert events[2][1] == (2,) and events[2][2][0] == "late"
    assert events[3][1] == (texts[3],) and events[4][1] == (3,) and events[4][2] is None
    assert [b[0] for b in batches] == [[0, 1], [2], [3]]


class HeldBackend(DelegatingBackend):
    """encode() of a batch holding "slowpoke" waits for a release (one per batch)."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.release = threading.Semaphore(0)
        self.held = threading.Semaphore(0)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if any("slowpoke" in t for t in texts):
            self.held.release()
            if not self.release.acquire(timeout=30):
                raise TimeoutError("test never released the batch")
        return super().encode(texts)


async def _until(predicate, what: str) -> None:
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def test_first_batch_of_a_window_is_answered_while_the_last_still_runs(make_client):
    client = await make_client(wrap=HeldBackend, batching={"max_batch_size": 2, "window_batches": 2,
                                                           "max_queue_delay_ms": 1, "pipeline": False})
    backend, batcher = client.backend, client.state.get("minilm", "1").batcher
    post = lambda q: asyncio.ensure_future(client.post("/v1/search", json={"query": q, "k": 2}))  # noqa: E731
    first = post("slowpoke holds the only instance")
    await _until(lambda: backend.held.acquire(blocking=False), "the instance to be busy")
    short = [post("oak"), post("drill")]
    long = [post(f"slowpoke cordless drill with two batteries and a case {i}") for i in range(2)]
    # A full window waits while the instance is busy: it is taken ahead (the queue empties into it).
    await _until(lambda: len(batcher._ahead_window or ()) == 4 and batcher.depth == 4, "the window taken ahead")
    backend.release.release()                                     # the first request's batch
    assert (await first).status == 200
    await _until(lambda: backend.held.acquire(blocking=False), "the window's second batch to start")
    # The window's first batch (the two short texts) is answered while its second batch still runs.
    done, _ = await asyncio.wait(short, timeout=10)
    assert len(done) == 2 and [t.result().status for t in short] == [200, 200]
    assert not any(t.done() for t in long)
    backend.release.release()
    assert [(await t).status for t in long] == [200, 200]
