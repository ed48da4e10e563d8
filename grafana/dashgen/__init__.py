"""Dashboard generator of the monitoring bundle (see grafana/build.py)."""
