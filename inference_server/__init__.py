"""Inference server for e-commerce search, re-ranking and recommendation (all-MiniLM-L6-v2).

Entry points: ``python -m inference_server`` (the CLI) and ``inference_server.api.app.create_app`` (the
aiohttp application factory).
"""

__version__ = "0.1.0"
