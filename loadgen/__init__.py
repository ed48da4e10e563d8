"""Traffic simulator: shoppers whose clicks follow true relevance, plus fault drills and alert sinks.

Entry point: `python -m loadgen --help`. The same package hosts the local alert sinks
(`python -m devstack.alert_sinks`) used by `scripts/run_stack.py` and the e2e test to
make Slack and email notifications visible without real Slack or SMTP servers.
"""
