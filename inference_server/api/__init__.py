"""The HTTP layer, the only package that imports aiohttp: the app factory, middleware, request schemas,
OpenAPI, and one routes module per group (serving, ops, admin, feedback, alerts)."""
