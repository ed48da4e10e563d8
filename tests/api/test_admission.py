"""Admission control: the window-cost fit, the admit / too-late decisions, and a batcher under overload
that sheds early (503 + Retry-After) instead of answering late (504) or computing for nobody."""
from __future__ import annotations

import asyncio
import json
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
    for i in range(4):                                   # calibrate: a few measured windows
        assert (await client.post("/v1/search", json={"query": f"warm {i}", "k": 2})).status == 200

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
    assert len(served) == len(ok) + 4 and max(served) <= deadline_ms * 1.1, max(served)
    assert all(r[2]["error"]["code"] == "overloaded" and r[3] for r in shed)
    assert max(r[1] for r in shed) < 0.5 * deadline_ms / 1000              # shed at once, not after waiting
    reg = client.metrics.registry
    shed_total = sum(sample_value(reg, "inference_admission_shed_total", {**VERSION, "reason": reason})
                     for reason in ("deadline", "queue_time", "late", "queue_full"))
    assert shed_total == len(shed)
    assert sample_value(reg, "inference_admission_admitted_total", VERSION) == len(ok) + 4
    assert sample_value(reg, "inference_admission_predicted_wait_seconds_count", VERSION) >= len(ok)
    assert sample_value(reg, "inference_wasted_compute_seconds_total", VERSION) == 0
    assert sample_value(reg, "inference_model_errors_total", {**VERSION, "reason": "timeout"}) == 0
