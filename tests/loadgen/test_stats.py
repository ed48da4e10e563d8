"""Live-summary arithmetic: percentiles, CTR per version, status tallies."""
from loadgen.stats import Stats, SummaryLine, percentile


def test_percentile_nearest_rank():
    assert percentile([], 95) is None
    assert percentile([3.0], 50) == 3.0
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 95) == 95.0 and percentile(values, 50) == 50.0 and percentile(values, 100) == 100.0


def test_ctr_by_version_and_status():
    stats = Stats()
    stats.record_request("search", "200", 0.01)
    stats.record_request("search", "503", 0.02)
    stats.record_served("1", 10)
    stats.record_served("2", 10)
    for kind in ("click", "click", "add_to_cart", "purchase"):
        stats.record_event("1", kind, 20.0)
    stats.record_event("2", "click", None)
    snap = stats.snapshot()
    assert snap["status"] == {"200": 1, "503": 1}
    assert snap["versions"]["1"]["ctr"] == 0.2 and snap["versions"]["2"]["ctr"] == 0.1
    assert snap["versions"]["1"]["revenue"] == 20.0 and snap["versions"]["1"]["orders"] == 1
    line = SummaryLine().format(stats, 5.0, 13.5, ["surge"])
    assert "v1=20.0%" in line and "503:1" in line and "sim 13:30" in line and "surge" in line
