"""Show what a starting component is doing, from its log: `make run` is not silent while the inference
server loads the model and builds its index.

The server writes tqdm bars (`embedding <catalog> catalog:  42%|...| 1260/3000`) and INFO lines
("loading model minilm version 1", "... warmup ok", "... ready in 26.0 s") to its log file, which the
runner does not show. `LogProgress.poll()` reads what was appended since the last call, turns the bar
into a progress bar on the runner's terminal and prints the INFO lines of the load steps, so the
runner says what really happens (a first start embeds the catalog, a cached one does not).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Optional, TextIO

from tqdm import tqdm

# tqdm's default format: "<desc>:  42%|####  | 1260/3000 [00:10<00:12, 98.1text/s]"
_BAR = re.compile(r"(?P<desc>[^\r\n|]+?):\s+\d+%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)")
# INFO lines of the load steps (logger names of the serving state and the lifecycle manager).
_STEP = re.compile(r"\bINFO inference_server\.(?:lifecycle\.manager|serving\.state): (?P<msg>.+)$")


class LogProgress:
    """Follow `log_path` from its current end (or start) and relay progress to `out`."""

    def __init__(self, log_path: Path, *, label: str = "inference-server", out: Optional[TextIO] = None,
                 from_start: bool = True) -> None:
        self.path = Path(log_path)
        self.label = label
        self.out = out or sys.stdout
        self.offset = 0 if from_start or not self.path.exists() else self.path.stat().st_size
        self.pending = ""
        self.bar: Optional[tqdm] = None
        self.bar_desc = ""

    def poll(self) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        self.offset += len(chunk)
        text = self.pending + chunk.decode("utf-8", errors="replace")
        # Fragments end at \r (a tqdm redraw) or \n; the last one may be incomplete.
        parts = re.split(r"[\r\n]", text)
        self.pending = parts.pop()
        for part in parts:
            self._handle(part)

    def _handle(self, line: str) -> None:
        m = _BAR.search(line)
        if m:
            desc, n, total = m.group("desc").strip(), int(m.group("n")), int(m.group("total"))
            if self.bar is None or desc != self.bar_desc or total != self.bar.total:
                self._close_bar()
                self.bar = tqdm(total=total, desc=f"  {self.label:17s} {desc}", unit="text", file=self.out,
                                dynamic_ncols=True, leave=True)
                self.bar_desc = desc
            self.bar.update(max(0, n - self.bar.n))
            return
        m = _STEP.search(line)
        if m:
            self._close_bar()
            print(f"  {self.label:17s} {m.group('msg').strip()}", file=self.out, flush=True)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self.poll()
        self._close_bar()
