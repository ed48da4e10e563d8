"""Turn the server's request log into a click log for fine-tuning (`python -m inference_server.click_log`).

The request log (serving/request_log.py) holds both halves of the join: a `request` line per served
search / rank answer (query text and the ids shown, in order) and a `feedback` line per accepted shopper
event (request id, product, position). This command joins them by request id, streaming: a served
request waits at most `--join-window-s` (log time) for its events, and at most `--max-pending`
requests wait at once, so memory stays bounded however long the log is.

Each served request with at least one event becomes one line `{"query", "clicked", "skipped", ...}`
(the `--click-log` input of `inference_server.training`):

- clicked: the products the shopper chose (a click, add-to-cart or purchase), in shown order;
- skipped: the products shown ABOVE the lowest-ranked chosen one and not chosen (Joachims' skip-above:
  the shopper most likely examined them and passed; products below the last click may never have been
  seen, so they are not negatives).

Left out: recommend answers (no query), answers that were not 200, lines without a logged query
(`request_log.log_queries: false`), and answers of drill versions (a `degrade:` section in the
version's model.yaml under `--model-repository`). Runtime fault drills (`POST /v1/admin/faults`) add
latency or fail requests; failed requests are not 200, and slowed ones still ranked normally.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Callable, Iterator, Optional, Sequence

from tqdm import tqdm

from inference_server.lifecycle.repository import ModelRepository, RepositoryError

__all__ = ["ClickJoin", "JoinCounts", "drill_versions", "log_file_groups", "main", "skip_above"]

QUERY_ENDPOINTS = ("search", "rank")
DEFAULT_JOIN_WINDOW_S = 1800.0    # = feedback.ttl_s's default: the server accepts no event later than that
DEFAULT_MAX_PENDING = 100_000     # = feedback.max_requests's default
_ROTATED = re.compile(r"^(?P<base>.+)\.(?P<n>[0-9]+)$")


def skip_above(result_ids: Sequence[str], positions: set[int]) -> tuple[list[str], list[str]]:
    """(clicked ids in shown order, ids shown above the lowest-ranked click and not clicked); 1-based positions."""
    if not positions:
        return [], []
    lowest = max(positions)
    clicked = [result_ids[p - 1] for p in sorted(positions)]
    skipped = [result_ids[p - 1] for p in range(1, lowest) if p not in positions]
    return clicked, skipped


def log_file_groups(paths: Sequence[Path]) -> list[list[Path]]:
    """The given logs and their rotated siblings (`requests.jsonl.1` ...), one group per live file, oldest first.

    `RotatingFileHandler` renames `x.1` to `x.2` and so on, so a higher suffix is older. Files of one group
    are one server's log in time order; different groups (replicas) are joined separately.
    """
    groups: dict[Path, set[Path]] = {}
    for path in paths:
        match = _ROTATED.match(path.name)
        base = path.with_name(match["base"]) if match else path
        members = groups.setdefault(base, set())
        members.add(path)
        if base.exists():
            members.add(base)
        if base.parent.is_dir():
            members.update(p for p in base.parent.iterdir() if _rotation(p, base))
    return [sorted(members, key=lambda p: -_rotation(p, base)) for base, members in groups.items()]


def _rotation(path: Path, base: Path) -> int:
    """n for `base.n`, else 0."""
    match = _ROTATED.match(path.name)
    return int(match["n"]) if match and match["base"] == base.name else 0


@dataclass
class JoinCounts:
    """What a join saw: printed by the command, asserted by the tests."""

    lines: int = 0
    request_lines: int = 0
    feedback_lines: int = 0
    joinable_requests: int = 0            # search/rank answers with a query, kept waiting for events
    events_joined: int = 0
    events_unmatched: int = 0             # no waiting request: recommend, drill, outside the window, older log
    requests_with_clicks: int = 0
    lines_written: int = 0
    closed_early: int = 0                 # left before their window ended because of --max-pending
    skipped_requests: Counter = field(default_factory=Counter)   # reason -> requests not joinable
    malformed: Counter = field(default_factory=Counter)          # reason -> lines skipped

    def report(self, out: IO[str]) -> None:
        print(f"lines read: {self.lines} ({self.request_lines} request, {self.feedback_lines} feedback)", file=out)
        print(f"requests read: {self.request_lines}; joinable search/rank answers: {self.joinable_requests}", file=out)
        for reason, n in sorted(self.skipped_requests.items()):
            print(f"  not joinable: {n} {reason}", file=out)
        print(f"feedback events joined: {self.events_joined}; without a waiting request: {self.events_unmatched}",
              file=out)
        print(f"requests with clicks: {self.requests_with_clicks}", file=out)
        if self.closed_early:
            print(f"  closed before their join window ended (--max-pending): {self.closed_early}", file=out)
        print(f"click-log lines written: {self.lines_written}", file=out)
        print(f"malformed lines skipped: {sum(self.malformed.values())}", file=out)
        for reason, n in sorted(self.malformed.items()):
            print(f"  {n} {reason}", file=out)


@dataclass(slots=True)
class _Waiting:
    at: float
    query: str
    result_ids: list[str]
    endpoint: str
    model: str
    version: str
    positions: set[int] = field(default_factory=set)


class ClickJoin:
    """Streaming join of request and feedback lines (in log order) into click-log records.

    `add(line)` returns the records of requests whose join window closed; `finish()` closes the rest.
    `is_drill(model, version)` says whether answers of that version are left out.
    """

    def __init__(self, *, join_window_s: float = DEFAULT_JOIN_WINDOW_S, max_pending: int = DEFAULT_MAX_PENDING,
                 is_drill: Callable[[str, str], bool] = lambda model, version: False,
                 counts: Optional[JoinCounts] = None) -> None:
        self.join_window_s = join_window_s
        self.max_pending = max_pending
        self.is_drill = is_drill
        self.counts = counts if counts is not None else JoinCounts()
        self._waiting: OrderedDict[str, _Waiting] = OrderedDict()   # request id -> answer, in log order

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, line: str) -> list[dict]:
        counts = self.counts
        counts.lines += 1
        try:
            record = json.loads(line)
        except ValueError:
            counts.malformed["not JSON"] += 1
            return []
        if not isinstance(record, dict):
            counts.malformed["not a JSON object"] += 1
            return []
        at = _seconds(record.get("time"))
        if at is None:
            counts.malformed["no valid time"] += 1
            return []
        request_id = record.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            counts.malformed["no request_id"] += 1
            return []
        out = self._expire(at)
        kind = record.get("record", "request")
        if kind == "feedback":
            counts.feedback_lines += 1
            self._event(request_id, record)
        elif kind == "request":
            counts.request_lines += 1
            out.extend(self._request(request_id, at, record))
        else:
            counts.malformed["unknown record kind"] += 1
        return out

    def finish(self) -> list[dict]:
        """Close every waiting request (end of one server's log)."""
        out = []
        while self._waiting:
            out.extend(self._close(*self._waiting.popitem(last=False)))
        return out

    def _expire(self, now: float) -> list[dict]:
        out = []
        horizon = now - self.join_window_s
        while self._waiting:
            request_id, waiting = next(iter(self._waiting.items()))
            if waiting.at >= horizon:
                break
            self._waiting.popitem(last=False)
            out.extend(self._close(request_id, waiting))
        return out

    def _request(self, request_id: str, at: float, record: dict) -> list[dict]:
        skipped = self.counts.skipped_requests
        endpoint = record.get("endpoint")
        if endpoint not in QUERY_ENDPOINTS:
            reason = "recommend answers (no query)" if endpoint == "recommend" else \
                "other endpoints (feedback posts, admin, ...)"
            skipped[reason] += 1
            return []
        if record.get("status") != 200:
            skipped["not answered 200"] += 1
            return []
        ids = record.get("result_ids")
        if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
            self.counts.malformed["result_ids not a list of ids"] += 1
            return []
        query = record.get("query")
        if not isinstance(query, str) or not query.strip():
            skipped["no query logged (request_log.log_queries: false)"] += 1
            return []
        model, version = str(record.get("model", "")), str(record.get("version", ""))
        if self.is_drill(model, version):
            skipped["drill versions"] += 1
            return []
        out = []
        if request_id in self._waiting:     # a client reused its X-Request-ID: the newest wins, as in the server
            out.extend(self._close(request_id, self._waiting.pop(request_id)))
        while len(self._waiting) >= self.max_pending:
            self.counts.closed_early += 1
            out.extend(self._close(*self._waiting.popitem(last=False)))
        self._waiting[request_id] = _Waiting(at, query, ids, endpoint, model, version)
        self.counts.joinable_requests += 1
        return out

    def _event(self, request_id: str, record: dict) -> None:
        position, product_id = record.get("position"), record.get("product_id")
        if not isinstance(position, int) or isinstance(position, bool) or position < 1 \
                or not isinstance(product_id, str):
            self.counts.malformed["feedback without product_id and position"] += 1
            return
        waiting = self._waiting.get(request_id)
        if waiting is None:
            self.counts.events_unmatched += 1
            return
        if position > len(waiting.result_ids) or waiting.result_ids[position - 1] != product_id:
            self.counts.malformed["feedback position not matching the logged answer"] += 1
            return
        waiting.positions.add(position)
        self.counts.events_joined += 1

    def _close(self, request_id: str, waiting: _Waiting) -> list[dict]:
        if not waiting.positions:
            return []
        self.counts.requests_with_clicks += 1
        clicked, skipped = skip_above(waiting.result_ids, waiting.positions)
        return [{"query": waiting.query, "clicked": clicked, "skipped": skipped, "request_id": request_id,
                 "endpoint": waiting.endpoint, "model": waiting.model, "version": waiting.version}]


def _seconds(value: object) -> Optional[float]:
    """Epoch seconds of the log's ISO 8601 time ("...Z"), None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


def drill_versions(root: Path) -> Callable[[str, str], bool]:
    """`is_drill(model, version)`: true for versions whose model.yaml degrades them on purpose."""
    repo = ModelRepository(root, root)
    known: dict[tuple[str, str], bool] = {}

    def is_drill(model: str, version: str) -> bool:
        key = (model, version)
        if key not in known:
            try:
                known[key] = repo.entry(model, version).config.degrade.active
            except RepositoryError:
                known[key] = False     # not in this repository: kept (nothing says it was a drill)
        return known[key]

    return is_drill


def _lines(paths: Sequence[Path], progress: tqdm, counts: JoinCounts) -> Iterator[str]:
    for path in paths:
        with path.open("rb") as handle:
            for raw in handle:
                progress.update(len(raw))
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError:
                    counts.lines += 1
                    counts.malformed["not UTF-8"] += 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m inference_server.click_log",
        description="Join the server's request log (queries and results shown) with its feedback lines (accepted "
                    "clicks, add-to-carts, purchases) into a click log: one JSONL line per served search/rank "
                    "answer with a click, {\"query\", \"clicked\", \"skipped\"} (skipped = shown above the lowest "
                    "click and not clicked). Input of `python -m inference_server.training --click-log`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--request-log", type=Path, action="append", required=True, metavar="FILE",
                   help="request log (request_log.path); its rotated files FILE.1, FILE.2 ... are read too. "
                        "Repeat for several servers' logs")
    p.add_argument("--out", type=Path, required=True, help="click log to write (JSONL; replaced atomically)")
    p.add_argument("--join-window-s", type=float, default=DEFAULT_JOIN_WINDOW_S,
                   help="how long (log time) an answer waits for its events; at least the server's feedback.ttl_s")
    p.add_argument("--max-pending", type=int, default=DEFAULT_MAX_PENDING,
                   help="answers waiting for events at once (bounds memory); the oldest closes early beyond it")
    p.add_argument("--model-repository", type=Path, default=Path("models"),
                   help="model repository (model_repository.root): answers of drill versions (degrade:) are left out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.join_window_s <= 0 or args.max_pending < 1:
        print("error: --join-window-s must be > 0 and --max-pending >= 1", file=sys.stderr)
        return 2
    groups = log_file_groups(args.request_log)
    files = [path for group in groups for path in group]
    for path in files:
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            print(f"error: cannot read request log {path}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    if not args.model_repository.is_dir():
        print(f"warning: no model repository at {args.model_repository}: drill versions cannot be told apart",
              file=sys.stderr)
    counts = JoinCounts()
    join = ClickJoin(join_window_s=args.join_window_s, max_pending=args.max_pending,
                     is_drill=drill_versions(args.model_repository), counts=counts)
    tmp = args.out.with_name(args.out.name + ".tmp")
    print(f"reading {len(files)} file(s): {', '.join(str(p) for p in files)}", file=sys.stderr)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as out, \
                tqdm(total=sum(p.stat().st_size for p in files), unit="B", unit_scale=True, desc="request log",
                     disable=args.no_progress, file=sys.stderr) as progress:
            for group in groups:
                for line in _lines(group, progress, counts):
                    if line.strip():
                        _write(out, join.add(line), counts)
                _write(out, join.finish(), counts)
        os.replace(tmp, args.out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        print(f"error: {exc.filename or args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    counts.report(sys.stdout)
    print(f"wrote {args.out}")
    return 0


def _write(out: IO[str], records: list[dict], counts: JoinCounts) -> None:
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        counts.lines_written += 1


if __name__ == "__main__":
    sys.exit(main())
