"""The local stack for `make run`, the tests and the benchmarks: one process supervisor, the stack runner,
and Slack/SMTP sinks that make alert notifications visible without real Slack or mail servers."""
