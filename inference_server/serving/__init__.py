"""Serving: the dynamic batcher, a model version's runtime and the state routing picks from, traffic
splits between versions, shadow traffic, scoring shared by every endpoint, metrics and the request log."""
