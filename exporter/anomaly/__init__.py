"""Anomaly scores over Prometheus series: online detectors and the runtime hosted by the exporter."""
