"""The runner relays the server's start-up from its log: the first index build as a progress bar,
the load steps as lines (a start is not silent, and says what it really does)."""
from __future__ import annotations

import io

from devstack.startup_progress import LogProgress

FIRST_START = [
    "2026-11-30 05:23:11,410 INFO inference_server: ======== Running on http://127.0.0.1:8000 ========\n",
    "2026-11-30 05:23:11,422 INFO inference_server.lifecycle.manager: loading model minilm version 1\n",
    "\rembedding synthetic catalog:   0%|          | 0/300 [00:00<?, ?text/s]",
    "\rembedding synthetic catalog:  85%|########5 | 256/3",  # a redraw cut mid-write
    "00 [00:06<00:01, 39.58text/s]",
    "\rembedding synthetic catalog: 100%|##########| 300/300 [00:07<00:00, 37.42text/s]\n",
    "2026-11-30 05:23:37,394 INFO inference_server.lifecycle.manager: model minilm version 1 ready in 26.0 s\n",
]


def test_first_start_shows_the_embedding_bar_and_the_steps(tmp_path):
    log = tmp_path / "inference_server.log"
    log.write_text("")
    out = io.StringIO()
    progress = LogProgress(log, out=out)
    seen_bar_at = []
    with log.open("a") as fh:
        for piece in FIRST_START:
            fh.write(piece)
            fh.flush()
            progress.poll()
            if progress.bar is not None:
                seen_bar_at.append((progress.bar.n, progress.bar.total))
    progress.close()
    text = out.getvalue()
    # the redraw cut at "256/3" is not read as a bar of 3 texts; the bar ends full
    assert seen_bar_at[0] == (0, 300) and seen_bar_at[-1] == (300, 300)
    assert {total for _, total in seen_bar_at} == {300}
    assert "embedding synthetic catalog" in text and "300/300" in text
    assert "inference-server  loading model minilm version 1" in text
    assert text.rstrip().endswith("inference-server  model minilm version 1 ready in 26.0 s")
    assert "Running on" not in text  # only the load steps, not every log line


def test_cached_start_shows_no_bar(tmp_path):
    log = tmp_path / "inference_server.log"
    log.write_text(FIRST_START[1] + "2026-11-30 05:30:00,000 INFO inference_server.serving.state: model minilm "
                   "version 1 loaded on cpu/float32 (load 3.1 s, index 0.1 s, warm-up 0.9 s)\n")
    out = io.StringIO()
    progress = LogProgress(log, out=out)
    progress.poll()
    assert progress.bar is None
    progress.close()
    assert "embedding" not in out.getvalue() and "index 0.1 s" in out.getvalue()
