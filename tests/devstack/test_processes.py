"""The process helpers start real Prometheus and Alertmanager and tear them down."""
from devstack.processes import running, start_alertmanager, start_prometheus


def test_prometheus_starts_scrapes_itself_and_stops(tmp_path):
    cfg = {"global": {"scrape_interval": "1s"}, "scrape_configs": []}
    with running(start_prometheus(tmp_path / "prom", cfg)) as prom:
        assert prom.query("vector(1)")[0]["value"][1] == "1"
    assert prom.proc.poll() is not None


def test_alertmanager_starts_and_stops(tmp_path):
    cfg = {"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}
    with running(start_alertmanager(tmp_path / "am", cfg)) as am:
        assert am.proc.poll() is None
    assert am.proc.poll() is not None
