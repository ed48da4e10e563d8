"""The request log: one JSON line per request, for tracing problems after the fact.

Lines are handed to a `QueueHandler` and written by a `QueueListener` thread into a size-rotated
file (`RotatingFileHandler`), so file I/O never blocks the event loop. User ids are never written:
only a salted SHA-256 (salt from env or a file, never the YAML), so lines of one shopper can be
correlated without revealing who it is.

Two kinds of line (`record`): `request` (one per request; search and rank lines carry the query text,
truncated to `request_log.max_query_chars`, unless `request_log.log_queries` is false) and `feedback`
(one per accepted feedback event, keyed by the served request's id). Together they are both halves of
the join that `python -m inference_server.click_log` turns into training data.
"""

from __future__ import annotations

import hashlib
import logging
import logging.handlers
import os
import queue
import secrets
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

from inference_server.config import ConfigError, RequestLogConfig
from inference_server.json_codec import encode_json

__all__ = ["RequestLog", "load_salt"]

log = logging.getLogger(__name__)


def load_salt(config: RequestLogConfig) -> bytes:
    """The user-id salt: the file if configured, else the env variable, else a random per-process one."""
    if config.user_id_salt_file:
        try:
            value = Path(config.user_id_salt_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError("request_log.user_id_salt_file", f"cannot read {config.user_id_salt_file!r}: "
                              f"{exc.strerror or exc}") from exc
        if not value:
            raise ConfigError("request_log.user_id_salt_file", f"{config.user_id_salt_file!r} is empty")
        return value.encode("utf-8")
    value = os.environ.get(config.user_id_salt_env, "")
    if value:
        return value.encode("utf-8")
    log.warning("no user-id salt in $%s or request_log.user_id_salt_file; using a random one, so user "
                "hashes will not match across restarts", config.user_id_salt_env)
    return secrets.token_bytes(32)


WARN_INTERVAL_S = 60.0  # at most one warning per minute about failing writes


class _CountingFileHandler(logging.handlers.RotatingFileHandler):
    """A failed write (disk full, file made unwritable) is counted and warned about once a minute,
    instead of a traceback on stderr for every record."""

    def __init__(self, *args, on_error: Optional[Callable[[], None]] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_error = on_error
        self._warned_at = -WARN_INTERVAL_S

    def close(self) -> None:
        try:
            super().close()
        except OSError:   # the final flush failed too: counted like any other lost write
            self.handleError(None)

    def handleError(self, record: Optional[logging.LogRecord]) -> None:  # noqa: N802 - logging's name
        self._lost(1)

    def write_lines(self, lines: list[str]) -> None:
        """Append formatted lines (each ending in a newline) with one write and one flush per file,
        rotating by size between lines as `emit` would: the writer thread's batch path, without a
        LogRecord, a lock round and a flush per line (measured under overload: a third of a core)."""
        self.acquire()
        try:
            if self.stream is None:
                self.stream = self._open()
            path = self.baseFilename
            rotates = self.maxBytes > 0 and not (os.path.exists(path) and not os.path.isfile(path))
            size = self.stream.tell()
            start = 0
            for i, line in enumerate(lines):
                if rotates and size > 0 and size + len(line) >= self.maxBytes:
                    self.stream.write("".join(lines[start:i]))
                    self.doRollover()
                    start, size = i, 0
                size += len(line)
            self.stream.write("".join(lines[start:]))
            self.stream.flush()
        except OSError:
            self._lost(len(lines))
        finally:
            self.release()

    def _lost(self, records: int) -> None:
        if self._on_error is not None:
            for _ in range(records):
                self._on_error()
        now = time.monotonic()
        if now - self._warned_at >= WARN_INTERVAL_S:
            self._warned_at = now
            exc = sys.exc_info()[1]
            log.warning("request log %s: write failed (%s); records are being lost (counted in "
                        "inference_request_log_errors_total)", self.baseFilename, exc)


class RequestLog:
    """Writes request records as JSON lines; `close()` flushes and stops the writer thread."""

    def __init__(self, config: RequestLogConfig, salt: Optional[bytes] = None,
                 on_error: Optional[Callable[[], None]] = None) -> None:
        self.config = config
        self._salt = salt if salt is not None else load_salt(config)
        self._logger = logging.getLogger(f"inference_server.request_log.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._listener: Optional[logging.handlers.QueueListener] = None
        if config.enabled:
            path = Path(config.path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                file_handler = _CountingFileHandler(
                    path, maxBytes=config.max_bytes, backupCount=config.backups, encoding="utf-8", on_error=on_error
                )
            except OSError as exc:
                raise ConfigError("request_log.path", f"cannot write {config.path!r}: {exc.strerror or exc}") from None
            file_handler.setFormatter(logging.Formatter("%(message)s"))
            # The request path only enqueues the raw values; the writer thread builds the record,
            # hashes the user id and encodes the JSON (measured: ~15 % of the event loop's busy time
            # when done per request on the loop).
            self._records: queue.SimpleQueue = queue.SimpleQueue()
            self._listener = _RecordWriter(self._records, self, file_handler)
            self._listener.start()

    @property
    def enabled(self) -> bool:
        return self._listener is not None

    def hash_user(self, user_id: Optional[str]) -> Optional[str]:
        if user_id is None:
            return None
        return hashlib.sha256(self._salt + b"\x00" + user_id.encode("utf-8")).hexdigest()

    def write(
        self,
        *,
        request_id: str,
        method: str,
        path: str,
        endpoint: str,
        status: int,
        total_seconds: float,
        model: str = "",
        version: str = "",
        queue_seconds: Optional[float] = None,
        compute_seconds: Optional[float] = None,
        result_ids: Optional[list[str]] = None,
        user_id: Optional[str] = None,
        error: Optional[str] = None,
        query: Optional[str] = None,
    ) -> None:
        if self._listener is None:
            return
        self._records.put((time.time(), request_id, method, path, endpoint, model, version, status, queue_seconds,
                           compute_seconds, total_seconds, result_ids, user_id, error, query))

    def write_feedback(self, *, request_id: str, event_id: str, event_type: str, product_id: str, position: int,
                       endpoint: str, model: str, version: str) -> None:
        """One accepted feedback event, keyed by the served request's id (no user id: events carry none)."""
        if self._listener is None:
            return
        self._records.put(_Feedback(time.time(), request_id, event_id, event_type, product_id, position,
                                    endpoint, model, version))

    def format(self, raw: tuple) -> str:
        """One JSON line from what `write` or `write_feedback` enqueued (runs in the writer thread)."""
        if isinstance(raw, _Feedback):
            line = {"time": _iso(raw.at), "record": "feedback", **raw._asdict()}
            del line["at"]
            return encode_json(line).decode("utf-8")
        (at, request_id, method, path, endpoint, model, version, status, queue_seconds, compute_seconds,
         total_seconds, result_ids, user_id, error, query) = raw
        if query is not None:
            query = query[:self.config.max_query_chars] if self.config.log_queries else None
        record: dict[str, Any] = {
            "time": _iso(at),
            "record": "request",
            "request_id": request_id,
            "method": method,
            "path": path,
            "endpoint": endpoint,
            "model": model,
            "version": version,
            "status": status,
            "queue_ms": _ms(queue_seconds),
            "compute_ms": _ms(compute_seconds),
            "total_ms": _ms(total_seconds),
            "result_ids": result_ids,
            "user_id_hash": self.hash_user(user_id),
            "error": error,
            "query": query,
        }
        return encode_json(record).decode("utf-8")

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()  # drains the queue
            for handler in self._listener.handlers:
                handler.close()
            self._listener = None
        for handler in list(self._logger.handlers):
            self._logger.removeHandler(handler)


class _RecordWriter(logging.handlers.QueueListener):
    """QueueListener whose queue holds `RequestLog.write` tuples, formatted here, off the event loop.
    It drains whatever is queued (up to `BATCH` records) and hands the lines to the file handler in one
    call, so a busy server pays one write and one flush per batch, not per request. After a batch that
    emptied the queue it lingers `LINGER_S` before waiting again: a busy server then wakes it about 20
    times a second instead of once per request, and each wake-up took the GIL from the event loop."""

    BATCH = 512
    LINGER_S = 0.05

    def __init__(self, records: queue.SimpleQueue, log: RequestLog, handler: _CountingFileHandler) -> None:
        super().__init__(records, handler)
        self._log = log
        self._file = handler

    def _monitor(self) -> None:
        records = self.queue
        while True:
            batch = [records.get()]
            while batch[-1] is not self._sentinel and len(batch) < self.BATCH:
                try:
                    batch.append(records.get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is self._sentinel
            lines = []
            for raw in batch[:-1] if stop else batch:
                try:
                    lines.append(self._log.format(raw) + "\n")
                except Exception:  # noqa: BLE001 - one bad record is counted as lost; the writer goes on
                    self._file.handleError(None)
            if lines:
                self._file.write_lines(lines)
            if stop:
                return
            if len(batch) < self.BATCH:
                time.sleep(self.LINGER_S)


class _Feedback(NamedTuple):
    """What `write_feedback` enqueues; field names are the line's keys (`at` becomes `time`)."""

    at: float
    request_id: str
    event_id: str
    type: str
    product_id: str
    position: int
    endpoint: str
    model: str
    version: str


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds * 1000.0, 3)
