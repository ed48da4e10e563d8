"""The HTTP serving layer: request schemas, dynamic batching, routing state, handlers and metrics.

Modules: `context` (app/request keys, route registry), `middleware` (ids, errors, metrics, request
log), `handlers` (search/rank/recommend/models), `ops` (healthz/readyz/metrics/openapi), `batching`
(the dynamic batcher), `state` (model versions and the routing hook), `schema`/`validation`
(request bodies), `openapi`, `metrics`, `request_log`, `errors`.
"""
