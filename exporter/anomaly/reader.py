"""Async reader of Prometheus' ``/api/v1/query_range`` with timeouts, retries and backoff.

Every failure is classified into the bounded ``reason`` vocabulary of ``anomaly_failures_total``.
"""
from __future__ import annotations

import asyncio
import json
import math
import random
from dataclasses import dataclass
from typing import Awaitable, Callable

import aiohttp
import numpy as np

RETRYABLE = {"source_unreachable", "source_timeout", "source_error"}


class SourceError(Exception):
    """A query failed; ``reason`` is one of source_unreachable, source_timeout, source_error,
    bad_response."""

    def __init__(self, reason: str, detail: str, *, retryable: bool | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = reason in RETRYABLE if retryable is None else retryable


@dataclass(frozen=True)
class RangeSeries:
    """One result series on the query's step grid; missing points are NaN."""

    labels: dict[str, str]
    timestamps: np.ndarray  # float seconds, regular grid
    values: np.ndarray


class PrometheusReader:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, *, timeout: float = 10.0,
                 retries: int = 2, backoff_initial: float = 0.5, backoff_max: float = 8.0,
                 headers: dict[str, str] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/api/v1/query_range"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._headers = headers or {}
        self._sleep = sleep

    async def query_range(self, query: str, start: float, end: float, step: float
                          ) -> list[RangeSeries]:
        """The series of ``query`` on the grid start, start+step, ..., end (retrying transient errors)."""
        attempt = 0
        while True:
            try:
                payload = await self._fetch(query, start, end, step)
                return parse_matrix(payload, start, end, step)
            except SourceError as exc:
                if not exc.retryable or attempt >= self._retries:
                    raise
            delay = min(self._backoff_max, self._backoff_initial * 2 ** attempt)
            await self._sleep(delay * (0.5 + random.random() / 2))  # jitter avoids lock-step retries
            attempt += 1

    async def _fetch(self, query: str, start: float, end: float, step: float) -> dict:
        data = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        try:
            async with self._session.post(self._url, data=data, timeout=self._timeout,
                                          headers=self._headers) as resp:
                body = await resp.read()
                status = resp.status
        except asyncio.TimeoutError:
            raise SourceError("source_timeout", f"no answer within {self._timeout.total}s") from None
        except aiohttp.ClientConnectionError as exc:
            raise SourceError("source_unreachable", str(exc) or type(exc).__name__) from None
        except aiohttp.ClientError as exc:
            raise SourceError("source_error", str(exc) or type(exc).__name__) from None
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            if status >= 500:
                raise SourceError("source_error", f"HTTP {status}") from None
            raise SourceError("bad_response", f"HTTP {status}, body is not JSON") from None
        if not isinstance(payload, dict):
            raise SourceError("bad_response", "JSON body is not an object")
        if status >= 500:
            raise SourceError("source_error", f"HTTP {status}: {payload.get('error', '')}")
        if status >= 400 or payload.get("status") != "success":
            # Bad PromQL or a refused query: retrying will not help.
            raise SourceError("source_error", f"HTTP {status}: {payload.get('error', '')}",
                              retryable=False)
        return payload


def parse_matrix(payload: dict, start: float, end: float, step: float) -> list[RangeSeries]:
    """Place a ``resultType: matrix`` answer on the regular grid; anything malformed -> bad_response."""
    try:
        data = payload["data"]
        if data["resultType"] != "matrix":
            raise SourceError("bad_response", f"resultType {data['resultType']!r}, want matrix")
        n = int(math.floor((end - start) / step + 1e-9)) + 1
        grid = start + step * np.arange(n)
        out = []
        for item in data["result"]:
            labels = item["metric"]
            if not isinstance(labels, dict):
                raise SourceError("bad_response", "metric is not an object")
            values = np.full(n, np.nan)
            pts = item.get("values") or []
            if pts:
                ts = np.array([float(p[0]) for p in pts])
                vs = np.array([float(p[1]) for p in pts])  # "NaN", "+Inf" parse too
                idx = np.rint((ts - start) / step).astype(int)
                ok = (idx >= 0) & (idx < n)
                values[idx[ok]] = vs[ok]
            values[~np.isfinite(values)] = np.nan
            out.append(RangeSeries({str(k): str(v) for k, v in labels.items()}, grid, values))
        return out
    except SourceError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SourceError("bad_response", f"malformed matrix: {exc!r}") from None
