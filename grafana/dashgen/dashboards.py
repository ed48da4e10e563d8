"""The bundle's dashboards. Each answers one on-call question set; panels use raw metrics with
`$__rate_interval` (so they follow the zoom) and the recording rules where a window is part of the
meaning (SLO burn rates, canary comparison).

Metric names and labels: docs/metrics.md. Recording rules: prometheus/rules/.
"""
from __future__ import annotations

from dashgen.model import Dashboard, Panel, Row, Target, Variable, alert_list, band, bargauge, stat, table, timeseries

SERVING = 'endpoint=~"search|rank|recommend"'
MV = 'model=~"$model", version=~"$version"'
RI = "[$__rate_interval]"
GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"
BURN = "suffix:×"  # burn rate: error ratio / error budget
# Where runbooks are read: the docs the local stack serves (scripts/run_stack.py, the alert sinks'
# /docs/); a hidden constant variable, so another deployment changes it in one place.
RUNBOOK_BASE_URL = "http://127.0.0.1:8025/docs/runbooks/"


def base_variables() -> list[Variable]:
    return [
        Variable("datasource", "Data source", kind="datasource", multi=False, include_all=False),
        Variable("model", "Model", "label_values(inference_model_info, model)"),
        Variable("version", "Version", 'label_values(inference_model_info{model=~"$model"}, version)'),
        Variable("runbook_base", "Runbook base URL", RUNBOOK_BASE_URL, kind="constant"),
    ]


def links() -> list[dict]:
    return [{"title": "Dashboards", "type": "dashboards", "tags": ["model-monitoring"], "asDropdown": True,
             "includeVars": True, "keepTime": True, "icon": "external link", "targetBlank": False,
             "tooltip": "", "url": ""},
            {"title": "Runbooks", "type": "link", "url": "${runbook_base}README.md", "icon": "doc",
             "tooltip": "What each alert means and what to do", "targetBlank": True, "asDropdown": False,
             "includeVars": False, "keepTime": False, "tags": []}]


def _ratio(numerator: str, denominator: str, by: str) -> str:
    """numerator/denominator per `by`; a label set with traffic but no numerator series gets 0."""
    return (f"(\n  sum by ({by}) ({numerator})\n  or\n  sum by ({by}) ({denominator}) * 0\n)\n"
            f"/\nsum by ({by}) ({denominator})")


def service_overview() -> Dashboard:
    errors = f'rate(inference_requests_total{{{SERVING}, status=~"5..|429", {MV}}}{RI})'
    total = f"rate(inference_requests_total{{{SERVING}, {MV}}}{RI})"
    panels: list[Panel] = [
        stat("Serving requests", "Requests per second to search, rank and recommend for the selected versions.",
             "reqps", Target(f"sum({total})", "requests"), thresholds=[(None, BLUE)]),
        stat("Error ratio", "Share of serving requests answered 5xx or 429 (overload). Other 4xx answers are "
             "client errors and not counted. The availability SLO allows 0.1%.", "percentunit",
             Target(f"(sum({errors}) or vector(0)) / sum({total})", "errors"),
             thresholds=[(None, GREEN), (0.001, YELLOW), (0.0144, RED)]),
        stat("p99 latency", "99th percentile of the time in the server for serving requests. The latency SLO "
             "asks 99% of requests within 300 ms.", "s",
             Target(f"histogram_quantile(0.99, sum by (le) (rate(inference_request_duration_seconds_bucket"
                    f"{{{SERVING}, {MV}}}{RI})))", "p99"),
             thresholds=[(None, GREEN), (0.2, YELLOW), (0.3, RED)]),
        stat("Availability burn rate (1h)", "Error ratio over the last hour divided by the 0.1% error budget; "
             "above 14.4 (with the 5m window) pages.", BURN,
             Target("max(job:inference_slo_availability_errors:ratio_rate1h) / 0.001", "1h burn"),
             thresholds=[(None, GREEN), (1, YELLOW), (14.4, RED)], decimals=2),
        stat("Latency burn rate (1h)", "Share of requests slower than 300 ms over the last hour divided by the "
             "1% budget; above 14.4 (with the 5m window) pages.", BURN,
             Target("max(job:inference_slo_latency_slow:ratio_rate1h) / 0.01", "1h burn"),
             thresholds=[(None, GREEN), (1, YELLOW), (14.4, RED)], decimals=2),
        stat("Versions ready", "Model versions loaded, health-checked and warmed up (inference_model_ready).",
             "none", Target(f"sum(inference_model_ready{{{MV}}})", "ready"),
             thresholds=[(None, RED), (1, GREEN)]),
        timeseries("Request rate by endpoint and version", "Finished requests per second, by endpoint and the "
                   "model version that served them (model and version are empty for requests rejected before "
                   "routing).", "reqps",
                   Target(f"sum by (endpoint, model, version) (rate(inference_requests_total{{{MV}}}{RI}))",
                          "{{endpoint}} {{model}}/{{version}}")),
        timeseries("Responses by status", "Finished requests per second by HTTP status code.", "reqps",
                   Target(f"sum by (status) (rate(inference_requests_total{{{MV}}}{RI}))", "{{status}}"),
                   stack=True),
        timeseries("Error ratio by endpoint and version", "Share of requests answered 5xx or 429, by endpoint "
                   "and version.", "percentunit",
                   Target(_ratio(f'rate(inference_requests_total{{status=~"5..|429", {MV}}}{RI})',
                                 f"rate(inference_requests_total{{{MV}}}{RI})", "endpoint, model, version"),
                          "{{endpoint}} {{model}}/{{version}}"),
                   min_value=0, thresholds=[(None, GREEN), (0.001, RED)]),
        timeseries("Latency p50 and p99 by endpoint and version", "Time in the server from request in to "
                   "response out (inference_request_duration_seconds).", "s",
                   Target(f"histogram_quantile(0.99, sum by (le, endpoint, model, version) (rate("
                          f"inference_request_duration_seconds_bucket{{{MV}}}{RI})))",
                          "p99 {{endpoint}} {{model}}/{{version}}"),
                   Target(f"histogram_quantile(0.5, sum by (le, endpoint, model, version) (rate("
                          f"inference_request_duration_seconds_bucket{{{MV}}}{RI})))",
                          "p50 {{endpoint}} {{model}}/{{version}}"),
                   thresholds=[(None, GREEN), (0.3, RED)]),
        timeseries("Availability SLO burn rate", "Error ratio / 0.1% budget over each alert window. Pages at "
                   "14.4 (1h and 5m) and 6 (6h and 30m); tickets at 3 (1d and 2h) and 1 (3d and 6h).", BURN,
                   *[Target(f"max(job:inference_slo_availability_errors:ratio_rate{w}) / 0.001", w)
                     for w in ("5m", "30m", "1h", "6h", "1d", "3d")],
                   thresholds=[(None, GREEN), (1, YELLOW), (6, ORANGE), (14.4, RED)], fill=0),
        timeseries("Latency SLO burn rate", "Share of requests slower than 300 ms / 1% budget over each alert "
                   "window; same thresholds as availability.", BURN,
                   *[Target(f"max(job:inference_slo_latency_slow:ratio_rate{w}) / 0.01", w)
                     for w in ("5m", "30m", "1h", "6h", "1d", "3d")],
                   thresholds=[(None, GREEN), (1, YELLOW), (6, ORANGE), (14.4, RED)], fill=0),
        timeseries("Requests in flight", "Requests being handled right now, by endpoint.", "none",
                   Target("sum by (endpoint) (inference_requests_in_flight)", "{{endpoint}}"), stack=True),
        timeseries("Rejected requests by reason", "4xx/429/503/504 answers per second by endpoint and reason "
                   "(validation, unknown_product, queue_full, ...).", "reqps",
                   Target(f"sum by (endpoint, reason) (rate(inference_rejected_requests_total{RI}))",
                          "{{endpoint}} {{reason}}"), stack=True),
        timeseries("Fault drills", "Faults injected per second by a drill (POST /v1/admin/faults), by kind and "
                   "version, and whether a drill is set: errors and latency while it is on are rehearsals.", "ops",
                   Target(f"sum by (kind, model, version) (rate(inference_injected_faults_total{{{MV}}}{RI}))",
                          "{{kind}} {{model}}/{{version}}"),
                   Target("max(inference_fault_injection_active)", "drill active"),
                   overrides=[{"matcher": {"id": "byName", "options": "drill active"},
                               "properties": [{"id": "unit", "value": "bool_on_off"},
                                              {"id": "custom.axisPlacement", "value": "right"},
                                              {"id": "custom.drawStyle", "value": "bars"}]}]),
    ]
    firing = alert_list("Firing and pending alerts", "Alert rules Prometheus evaluates that are firing or "
                        "pending now, with their instances; each rule's runbook_url annotation links its "
                        "runbook.")
    return Dashboard("service-overview", "Inference service overview",
                     "Traffic, errors and latency of the inference server per endpoint and model version, "
                     "and the burn rate of its availability and latency SLOs.",
                     ["model-monitoring", "inference-server", "slo"], base_variables(),
                     [*panels[:6], firing, Row("Traffic, errors and latency", panels[6:10], collapsed=False),
                      Row("SLO burn rates", panels[10:12], collapsed=False),
                      Row("In flight, rejections and drills", panels[12:])], links())


def batching() -> Dashboard:
    panels: list[Panel] = [
        timeseries("Batch size", "Texts per executed batch: p50, p90 and mean. Small batches under load mean "
                   "the batcher's wait is too short for the traffic.", "none",
                   Target(f"histogram_quantile(0.5, sum by (le, model, version) (rate(inference_batch_size_bucket"
                          f"{{{MV}}}{RI})))", "p50 {{model}}/{{version}}"),
                   Target(f"histogram_quantile(0.9, sum by (le, model, version) (rate(inference_batch_size_bucket"
                          f"{{{MV}}}{RI})))", "p90 {{model}}/{{version}}"),
                   Target(f"sum by (model, version) (rate(inference_batch_size_sum{{{MV}}}{RI})) / "
                          f"sum by (model, version) (rate(inference_batch_size_count{{{MV}}}{RI}))",
                          "mean {{model}}/{{version}}")),
        timeseries("Batches and encoded texts per second", "Model executions per second and the texts they "
                   "encoded per second.", "ops",
                   Target(f"sum by (model, version) (rate(inference_batch_size_count{{{MV}}}{RI}))",
                          "batches {{model}}/{{version}}"),
                   Target(f"sum by (model, version) (rate(inference_batch_size_sum{{{MV}}}{RI}))",
                          "texts {{model}}/{{version}}")),
        timeseries("Queue wait p50 and p99", "Time a request's encoding work waited in the batch queue.", "s",
                   Target(f"histogram_quantile(0.99, sum by (le, model, version) (rate("
                          f"inference_queue_duration_seconds_bucket{{{MV}}}{RI})))", "p99 {{model}}/{{version}}"),
                   Target(f"histogram_quantile(0.5, sum by (le, model, version) (rate("
                          f"inference_queue_duration_seconds_bucket{{{MV}}}{RI})))", "p50 {{model}}/{{version}}")),
        timeseries("Batch compute time p50 and p99", "Model execution time of one batch (tokenise, forward, "
                   "pool).", "s",
                   Target(f"histogram_quantile(0.99, sum by (le, model, version) (rate("
                          f"inference_compute_duration_seconds_bucket{{{MV}}}{RI})))", "p99 {{model}}/{{version}}"),
                   Target(f"histogram_quantile(0.5, sum by (le, model, version) (rate("
                          f"inference_compute_duration_seconds_bucket{{{MV}}}{RI})))", "p50 {{model}}/{{version}}")),
        timeseries("Queue depth and capacity", "Texts waiting in the batch queue, and the queue's capacity "
                   "(max_queue_size). A full queue answers 429.", "none",
                   Target(f"sum by (instance, model, version) (inference_queue_depth{{{MV}}})",
                          "depth {{instance}} {{model}}/{{version}}"),
                   Target(f"sum by (instance, model, version) (inference_queue_capacity{{{MV}}})",
                          "capacity {{instance}} {{model}}/{{version}}"), fill=0),
        timeseries("Queue saturation", "Queue depth / capacity per server (recording rule). "
                   "InferenceQueueSaturated fires above 80% for 5 minutes.", "percentunit",
                   Target(f"instance_model_version:inference_queue_saturation:ratio{{{MV}}}",
                          "{{instance}} {{model}}/{{version}}"),
                   min_value=0, max_value=1, thresholds=[(None, GREEN), (0.8, RED)]),
        timeseries("Tokens per text", "Tokens per encoded text (including special tokens, capped at the "
                   "model's max_seq_length): mean and p90.", "none",
                   Target(f"sum by (model, version) (rate(inference_request_tokens_sum{{{MV}}}{RI})) / "
                          f"sum by (model, version) (rate(inference_request_tokens_count{{{MV}}}{RI}))",
                          "mean {{model}}/{{version}}"),
                   Target(f"histogram_quantile(0.9, sum by (le, model, version) (rate("
                          f"inference_request_tokens_bucket{{{MV}}}{RI})))", "p90 {{model}}/{{version}}")),
        timeseries("Overload rejections", "Requests answered 429 (queue_full), 503 (overloaded, not_ready) or "
                   "504 (deadline_exceeded) per second.", "reqps",
                   Target(f'sum by (endpoint, reason) (rate(inference_rejected_requests_total{{reason=~'
                          f'"queue_full|overloaded|deadline_exceeded|not_ready"}}{RI}))', "{{endpoint}} {{reason}}"),
                   stack=True),
        timeseries("Autoscaling signal per replica", "Mean batch-queue wait per replica over 1 minute "
                   "(instance:inference_scaling_pressure:seconds), the metric the HorizontalPodAutoscaler "
                   "scales on with a target of 25 ms (docs/kubernetes.md).", "s",
                   Target("instance:inference_scaling_pressure:seconds", "{{instance}}"),
                   min_value=0, thresholds=[(None, GREEN), (0.025, RED)]),
        timeseries("Replicas: current and wanted by the autoscaling formula", "Replicas scraped, and "
                   "ceil(replicas x mean signal / 25 ms): what the HPA asks for before its min/max bounds.",
                   "none",
                   Target("count(instance:inference_scaling_pressure:seconds)", "current"),
                   Target("ceil(count(instance:inference_scaling_pressure:seconds) * "
                          "avg(instance:inference_scaling_pressure:seconds) / 0.025)", "wanted"), fill=0),
        timeseries("Admission: admitted and shed", "Requests admitted to the batch queue, and shed at once "
                   "(503 overloaded / 429 queue_full + Retry-After) because their predicted queue wait + compute "
                   "would miss their deadline (deadline), the wait exceeds max_queue_wait_ms (queue_time), "
                   "their time ran out before their window started (late) or the queue was full.", "reqps",
                   Target(f"sum by (model, version) (rate(inference_admission_admitted_total{{{MV}}}{RI}))",
                          "admitted {{model}}/{{version}}"),
                   Target(f"sum by (model, version, reason) (rate(inference_admission_shed_total{{{MV}}}{RI}))",
                          "shed {{reason}} {{model}}/{{version}}"), stack=True),
        timeseries("Admission: predicted queue wait and wasted compute",
                   "Queue wait predicted from the measured service rate when requests arrive (p50, p99), and the "
                   "share of model compute spent on requests that had already failed (should stay near 0).", "s",
                   Target(f"histogram_quantile(0.99, sum by (le, model, version) (rate("
                          f"inference_admission_predicted_wait_seconds_bucket{{{MV}}}{RI})))",
                          "predicted wait p99 {{model}}/{{version}}"),
                   Target(f"histogram_quantile(0.5, sum by (le, model, version) (rate("
                          f"inference_admission_predicted_wait_seconds_bucket{{{MV}}}{RI})))",
                          "predicted wait p50 {{model}}/{{version}}"),
                   Target(f"sum by (model, version) (rate(inference_wasted_compute_seconds_total{{{MV}}}{RI})) / "
                          f"sum by (model, version) (rate(inference_compute_duration_seconds_sum{{{MV}}}{RI}))",
                          "wasted compute share {{model}}/{{version}}")),
    ]
    return Dashboard("batching-queue", "Batching and queue",
                     "How the dynamic batcher performs: batch sizes, queue wait, compute time, queue depth and "
                     "overload rejections per model version.",
                     ["model-monitoring", "inference-server", "batching"], base_variables(), panels, links())


def business() -> Dashboard:
    def per_version(metric_num: str, metric_den: str) -> str:
        return (f"sum by (model, version) (increase({metric_num}{{{MV}}}[$__range]))\n/\n"
                f"sum by (model, version) (increase({metric_den}{{{MV}}}[$__range]))")

    ab = "A/B comparison over the selected time range, one bar per model version."
    panels: list[Panel] = [
        bargauge("Click-through rate by version", f"Clicks per impression. {ab}", "percentunit",
                 Target(per_version("business_clicks_total", "business_impressions_total"), "{{model}}/{{version}}",
                        instant=True)),
        bargauge("Add-to-cart rate by version", f"Add-to-cart events per served request. {ab}", "percentunit",
                 Target(per_version("business_add_to_carts_total", "business_requests_served_total"),
                        "{{model}}/{{version}}", instant=True)),
        bargauge("Conversion rate by version", f"Served requests with a purchase per served request. {ab}",
                 "percentunit",
                 Target(per_version("business_converted_requests_total", "business_requests_served_total"),
                        "{{model}}/{{version}}", instant=True)),
        bargauge("Revenue by version", f"Revenue attributed to each version's results (the simulator's "
                 f"currency, USD). {ab}", "currencyUSD",
                 Target(f"sum by (model, version, currency) (increase(business_revenue_total{{{MV}}}[$__range]))",
                        "{{model}}/{{version}} {{currency}}", instant=True)),
        bargauge("Online NDCG by version", "Mean NDCG@k of requests with at least one click, from the click "
                 f"positions (0-1). {ab}", "none",
                 Target(per_version("business_request_ndcg_sum", "business_request_ndcg_count"),
                        "{{model}}/{{version}}", instant=True), max_value=1),
        bargauge("Online MRR by version", f"Mean reciprocal rank of clicked results (0-1). {ab}", "none",
                 Target(per_version("business_click_reciprocal_rank_sum", "business_click_reciprocal_rank_count"),
                        "{{model}}/{{version}}", instant=True), max_value=1),
        table("Canary against stable", "Per version: traffic weight, and the figures the canary alerts compare "
              "(CTR over 30 minutes, serving error ratio and p99 latency over 5 minutes). The version with the "
              "highest weight is stable; a lower non-zero weight is a canary.", "none",
              Target(f"max by (model, version) (inference_model_traffic_weight_ratio{{{MV}}})", instant=True,
                     table=True),
              Target(f"max by (model, version) (job_model_version:business_click_through:ratio_rate30m{{{MV}}})",
                     instant=True, table=True),
              Target(f"max by (model, version) (job_model_version:inference_serving_request_errors:ratio_rate5m"
                     f"{{{MV}}})", instant=True, table=True),
              Target(f"max by (model, version) (job_model_version_quantile:inference_serving_request_duration_"
                     f'seconds:histogram_quantile{{quantile="0.99", {MV}}})', instant=True, table=True),
              rename={"Value #A": "traffic weight", "Value #B": "CTR (30m)", "Value #C": "error ratio (5m)",
                      "Value #D": "p99 latency (5m)"}),
        timeseries("Click-through rate by endpoint and version", "Clicks per impression.", "percentunit",
                   Target(_ratio(f"rate(business_clicks_total{{{MV}}}{RI})",
                                 f"rate(business_impressions_total{{{MV}}}{RI})", "endpoint, model, version"),
                          "{{endpoint}} {{model}}/{{version}}"), min_value=0),
        timeseries("Click-through rate against last week", "Click-through rate over the last hour, all "
                   "versions, against the same hour a week earlier. BusinessClickThroughRateDrop fires below "
                   "80% of last week.", "percentunit",
                   Target("sum by (endpoint) (job_endpoint_model_version:business_clicks:rate1h) / "
                          "sum by (endpoint) (job_endpoint_model_version:business_impressions:rate1h)",
                          "{{endpoint}} now"),
                   Target("sum by (endpoint) (job_endpoint_model_version:business_clicks:rate1h offset 1w) / "
                          "sum by (endpoint) (job_endpoint_model_version:business_impressions:rate1h offset 1w)",
                          "{{endpoint}} last week"), min_value=0),
        timeseries("Add-to-cart and conversion rates", "Add-to-cart events and orders per served request, by "
                   "endpoint and version.", "percentunit",
                   Target(_ratio(f"rate(business_add_to_carts_total{{{MV}}}{RI})",
                                 f"rate(business_requests_served_total{{{MV}}}{RI})", "endpoint, model, version"),
                          "add-to-cart {{endpoint}} {{model}}/{{version}}"),
                   Target(_ratio(f"rate(business_converted_requests_total{{{MV}}}{RI})",
                                 f"rate(business_requests_served_total{{{MV}}}{RI})", "endpoint, model, version"),
                          "conversion {{endpoint}} {{model}}/{{version}}"), min_value=0),
        timeseries("Revenue rate", "Revenue per second attributed to search and recommendation results, by "
                   "version and currency (the simulator's currency, USD).", "currencyUSD",
                   Target(f"sum by (model, version, currency) (rate(business_revenue_total{{{MV}}}{RI}))",
                          "{{model}}/{{version}} {{currency}}"), stack=True),
        timeseries("Online NDCG and MRR", "Ranking quality from live clicks: mean NDCG@k of clicked requests "
                   "and mean reciprocal rank of clicks (0-1).", "none",
                   Target(f"sum by (model, version) (rate(business_request_ndcg_sum{{{MV}}}{RI})) / "
                          f"sum by (model, version) (rate(business_request_ndcg_count{{{MV}}}{RI}))",
                          "NDCG {{model}}/{{version}}"),
                   Target(f"sum by (model, version) (rate(business_click_reciprocal_rank_sum{{{MV}}}{RI})) / "
                          f"sum by (model, version) (rate(business_click_reciprocal_rank_count{{{MV}}}{RI}))",
                          "MRR {{model}}/{{version}}"), min_value=0, max_value=1),
        timeseries("Mean click position", "Average 1-based position of clicked results; rising means shoppers "
                   "scroll further to find what they want.", "none",
                   Target(f"sum by (model, version) (rate(business_click_position_sum{{{MV}}}{RI})) / "
                          f"sum by (model, version) (rate(business_click_position_count{{{MV}}}{RI}))",
                          "{{model}}/{{version}}")),
        timeseries("Impressions and served requests", "Products shown and requests registered for feedback "
                   "joins per second.", "ops",
                   Target(f"sum by (model, version) (rate(business_impressions_total{{{MV}}}{RI}))",
                          "impressions {{model}}/{{version}}"),
                   Target(f"sum by (model, version) (rate(business_requests_served_total{{{MV}}}{RI}))",
                          "requests {{model}}/{{version}}")),
        timeseries("Feedback events", "Feedback events per second by type and outcome (accepted, duplicate, "
                   "unknown_request, expired_request, invalid).", "ops",
                   Target(f"sum by (type, outcome) (rate(business_feedback_events_total{RI}))",
                          "{{type}} {{outcome}}"), stack=True),
        timeseries("Feedback join store", "Served requests held for feedback joins.", "none",
                   Target("sum(business_feedback_store_requests)", "requests held")),
    ]
    return Dashboard("business-kpis", "Business KPIs and A/B comparison",
                     "Click-through, add-to-cart and conversion rates, revenue and online ranking quality per "
                     "model version, with a side-by-side comparison of versions.",
                     ["model-monitoring", "business", "ab-test"], base_variables(),
                     [Row("A/B comparison", panels[:7], collapsed=False), Row("Trends", panels[7:13], collapsed=False),
                      Row("Feedback pipeline", panels[13:])], links())


def model_health() -> Dashboard:
    panels: list[Panel] = [
        table("Loaded versions", "What each server has loaded: backend, device and dtype, readiness and traffic "
              "weight.", "none",
              Target(f"max by (model, version, backend, device, dtype) (inference_model_info{{{MV}}})",
                     instant=True, table=True),
              Target(f"max by (model, version) (inference_model_ready{{{MV}}})", instant=True, table=True),
              Target(f"max by (model, version) (inference_model_traffic_weight_ratio{{{MV}}})", instant=True,
                     table=True),
              rename={"Value #A": "loaded", "Value #B": "ready", "Value #C": "traffic weight"}, height=6),
        timeseries("Traffic weight", "Configured share of live traffic per version (a rollback sets a "
                   "version's weight to 0).", "percentunit",
                   Target(f"max by (model, version) (inference_model_traffic_weight_ratio{{{MV}}})",
                          "{{model}}/{{version}}"), stack=True, min_value=0, max_value=1),
        timeseries("Version state", "1 for the current state of each version (loading, ready, failed, "
                   "unloaded).", "none",
                   Target(f"max by (model, version, state) (inference_model_state{{{MV}}}) == 1",
                          "{{model}}/{{version}} {{state}}")),
        timeseries("Health checks", "1 when the last health check passed, 0 when it failed, by check "
                   "(finite_weights, golden_set, warmup).", "none",
                   Target(f"min by (model, version, check) (inference_model_health_check_ok{{{MV}}})",
                          "{{model}}/{{version}} {{check}}"), min_value=0, max_value=1),
        timeseries("Time since the last golden check", "Seconds since the periodic golden-set check last ran "
                   "per version.", "s",
                   Target(f"time() - max by (model, version) (inference_model_health_check_last_run_timestamp_"
                          f"seconds{{{MV}}})", "{{model}}/{{version}}")),
        timeseries("Drift: population stability index", "PSI of the online window against the version's "
                   "registration reference, by feature. Above 0.25 is a significant shift (ModelDriftHigh).",
                   "none",
                   Target(f"max by (model, version, feature) (inference_drift_psi{{{MV}}})",
                          "{{model}}/{{version}} {{feature}}"),
                   thresholds=[(None, GREEN), (0.1, YELLOW), (0.25, RED)], min_value=0),
        timeseries("Drift: Kolmogorov-Smirnov statistic", "KS statistic of the same windows, by feature.", "none",
                   Target(f"max by (model, version, feature) (inference_drift_ks_statistic{{{MV}}})",
                          "{{model}}/{{version}} {{feature}}"), min_value=0, max_value=1),
        timeseries("Drift window samples", "Samples in the online drift window; PSI alerts need 200.", "none",
                   Target(f"max by (model, version, feature) (inference_drift_window_samples{{{MV}}})",
                          "{{model}}/{{version}} {{feature}}")),
        bargauge("Load and warm-up time", "Time to load each version's weights and to run its warm-up passes.",
                 "s",
                 Target(f"max by (model, version) (inference_model_load_duration_seconds{{{MV}}})",
                        "load {{model}}/{{version}}", instant=True),
                 Target(f"max by (model, version) (inference_model_warmup_duration_seconds{{{MV}}})",
                        "warm-up {{model}}/{{version}}", instant=True)),
        bargauge("Catalog", "Products in the index per catalog.", "none",
                 Target("max by (catalog) (inference_catalog_products)", "{{catalog}}", instant=True)),
        bargauge("Index build time", "Time to build (or load from cache) the catalog embeddings.", "s",
                 Target("max by (catalog) (inference_index_build_duration_seconds)", "{{catalog}}",
                        instant=True)),
        timeseries("Shadow traffic", "Requests mirrored to shadow versions per second (shadow versions answer "
                   "nobody; their metrics show how they would do).", "reqps",
                   Target(f"sum by (model, version) (rate(inference_shadow_requests_total{{{MV}}}{RI}))",
                          "{{model}}/{{version}}")),
        timeseries("Shadow agreement", "Mean share of the live answer's products the shadow version also "
                   "returned (top-k overlap): low agreement means the shadow would change what shoppers see.",
                   "percentunit",
                   Target(f"sum by (model, version) (rate(inference_shadow_topk_overlap_ratio_sum{{{MV}}}{RI})) / "
                          f"sum by (model, version) (rate(inference_shadow_topk_overlap_ratio_count{{{MV}}}{RI}))",
                          "{{model}}/{{version}}"), min_value=0, max_value=1),
        timeseries("Admin and rollback actions", "Admin API actions and Alertmanager webhook actions "
                   "(rollback, ignored) per outcome.", "ops",
                   Target(f"sum by (action, outcome) (rate(inference_admin_actions_total{RI}))",
                          "admin {{action}} {{outcome}}"),
                   Target(f"sum by (action, outcome) (rate(inference_alert_webhook_actions_total{RI}))",
                          "webhook {{action}} {{outcome}}")),
        timeseries("Traffic weight per replica", "The split each server replica applies (shared through "
                   "traffic.store, docs/kubernetes.md). Lines of one version that part mean a replica does not "
                   "follow the shared split (TrafficSplitReplicasDisagree after 1 minute).", "percentunit",
                   Target(f"max by (instance, model, version) (inference_model_traffic_weight_ratio{{{MV}}})",
                          "{{instance}} {{model}}/{{version}}"), min_value=0, max_value=1),
        timeseries("Shared split revision per replica", "Revision of the shared traffic split each replica "
                   "applies; all replicas should show the same value within seconds of a change.", "none",
                   Target('max by (instance, model) (inference_traffic_split_revision{model=~"$model"})',
                          "{{instance}} {{model}}")),
        timeseries("A/B test: click-through per arm", "CTR (clicks per served request) of the control and the "
                   "canary since the canary's A/B test started, with 95% Wilson intervals.", "percentunit",
                   Target(f'max by (model, version, role) (inference_ab_test_rate{{metric="ctr", {MV}}})',
                          "{{model}}/{{version}} {{role}}"),
                   Target(f'max by (model, version, role, bound) (inference_ab_test_rate_bound{{metric="ctr", {MV}}})',
                          "{{model}}/{{version}} {{role}} {{bound}}"), min_value=0),
        timeseries("A/B test: lift", "Canary minus control, per metric, with its always-valid confidence "
                   "sequence: a bound crossing 0 is what the sequential test decides on.", "percentunit",
                   Target(f"max by (model, version, metric) (inference_ab_test_lift{{{MV}}})",
                          "{{model}}/{{version}} {{metric}}"),
                   Target(f"max by (model, version, metric, bound) (inference_ab_test_lift_bound{{{MV}}})",
                          "{{model}}/{{version}} {{metric}} {{bound}}")),
        timeseries("A/B test: always-valid p-value", "mSPRT p-value of lift = 0 (min over the test's life); "
                   "a decision needs it at or below ab_test.alpha (0.05) and min_requests per arm.", "none",
                   Target(f"max by (model, version, metric) (inference_ab_test_p_value{{{MV}}})",
                          "{{model}}/{{version}} {{metric}}"),
                   thresholds=[(None, GREEN), (0.05, YELLOW)], min_value=0, max_value=1),
        table("A/B test: decision and sample size", "The canary's decision on the primary metric (better: "
              "promoted by CanaryWinsABTest; worse: rolled back by CanaryLosesABTest; not_yet) and the served "
              "requests counted per arm.", "none",
              Target(f"max by (model, version, decision) (inference_ab_test_decision{{{MV}}}) == 1",
                     instant=True, table=True),
              Target(f"max by (model, version, role) (inference_ab_test_requests{{{MV}}})", instant=True,
                     table=True),
              rename={"Value #A": "decision", "Value #B": "requests"}, height=6),
    ]
    return Dashboard("model-health", "Model health and drift",
                     "Which versions are loaded and ready, their traffic split, health checks, and drift of "
                     "live traffic against each version's reference.",
                     ["model-monitoring", "model-lifecycle", "drift"], base_variables(),
                     [*panels[:5], Row("Drift", panels[5:8], collapsed=False),
                      Row("Load, catalog and index", panels[8:11]), Row("Shadow traffic and actions", panels[11:])],
                     links())


def gpu_fleet() -> Dashboard:
    g = 'instance=~"$instance", gpu=~"$gpu"'
    legend = "{{instance}} GPU {{gpu}}"
    variables = base_variables() + [
        Variable("instance", "Exporter", "label_values(nvidia_gpu_nvml_up, instance)"),
        Variable("gpu", "GPU", 'label_values(nvidia_gpu_info{instance=~"$instance"}, gpu)'),
    ]
    panels: list[Panel] = [
        stat("GPUs", "Devices NVML reports on the selected exporters.", "none",
             Target('sum(nvidia_gpu_devices{instance=~"$instance"})', "GPUs"), thresholds=[(None, BLUE)]),
        stat("GPUs up", "Devices answering NVML (0 for a lost GPU).", "none",
             Target(f"sum(nvidia_gpu_up{{{g}}})", "up"), thresholds=[(None, RED), (1, GREEN)]),
        stat("NVML up", "1 when every selected exporter has NVML initialised.", "none",
             Target('min(nvidia_gpu_nvml_up{instance=~"$instance"})', "NVML"), thresholds=[(None, RED), (1, GREEN)]),
        stat("GPU utilisation", "Mean busy share of the selected GPUs.", "percentunit",
             Target(f"avg(nvidia_gpu_utilization_ratio{{{g}}})", "utilisation"),
             thresholds=[(None, BLUE), (0.9, ORANGE)]),
        stat("Memory used", "Framebuffer memory used across the selected GPUs.", "percentunit",
             Target(f"sum(nvidia_gpu_memory_used_bytes{{{g}}}) / sum(nvidia_gpu_memory_total_bytes{{{g}}})",
                    "memory"), thresholds=[(None, GREEN), (0.9, YELLOW), (0.95, RED)]),
        stat("Hottest GPU", "Highest core temperature among the selected GPUs.", "celsius",
             Target(f'max(nvidia_gpu_temperature_celsius{{sensor="gpu", {g}}})', "max"),
             thresholds=[(None, GREEN), (80, YELLOW), (85, RED)]),
        timeseries("Utilisation", "GPU busy share and memory-controller busy share per GPU.", "percentunit",
                   Target(f"nvidia_gpu_utilization_ratio{{{g}}}", f"SM {legend}"),
                   Target(f"nvidia_gpu_memory_utilization_ratio{{{g}}}", f"memory {legend}"),
                   min_value=0, max_value=1),
        timeseries("Serving throughput and GPU utilisation", "Texts encoded per second by the selected model "
                   "versions, next to the mean GPU utilisation: throughput that stops growing while "
                   "utilisation is at 100% means the GPU is the bottleneck.", "ops",
                   Target(f"sum by (model, version) (rate(inference_batch_size_sum{{{MV}}}{RI}))",
                          "texts/s {{model}}/{{version}}"),
                   Target(f"avg(nvidia_gpu_utilization_ratio{{{g}}})", "GPU utilisation"),
                   overrides=[{"matcher": {"id": "byName", "options": "GPU utilisation"},
                               "properties": [{"id": "unit", "value": "percentunit"},
                                              {"id": "custom.axisPlacement", "value": "right"},
                                              {"id": "max", "value": 1}]}]),
        timeseries("Memory used", "Framebuffer memory used per GPU, and its total.", "bytes",
                   Target(f"nvidia_gpu_memory_used_bytes{{{g}}}", f"used {legend}"),
                   Target(f"nvidia_gpu_memory_total_bytes{{{g}}}", f"total {legend}"), fill=0),
        timeseries("Memory used ratio", "Used / total framebuffer memory per GPU (recording rule); "
                   "GPUMemoryNearFull fires above 95% for 15 minutes.", "percentunit",
                   Target(f"instance_gpu:nvidia_gpu_memory_used:ratio{{{g}}}", legend),
                   min_value=0, max_value=1, thresholds=[(None, GREEN), (0.95, RED)]),
        timeseries("Temperature", "Core and memory temperature per GPU; GPUTemperatureHigh fires above 85 °C "
                   "(core) or 95 °C (memory) for 10 minutes.", "celsius",
                   Target(f"nvidia_gpu_temperature_celsius{{{g}}}", f"{legend} {{{{sensor}}}}"),
                   thresholds=[(None, GREEN), (85, RED)]),
        timeseries("Power", "Power draw and the enforced power limit per GPU.", "watt",
                   Target(f"nvidia_gpu_power_usage_watts{{{g}}}", f"draw {legend}"),
                   Target(f"nvidia_gpu_power_limit_watts{{{g}}}", f"limit {legend}"), fill=0),
        timeseries("SM clock", "Current SM clock per GPU; drops under load mean throttling.", "hertz",
                   Target(f'nvidia_gpu_clock_hz{{clock="sm", {g}}}', legend)),
        timeseries("Clock slowdown reasons", "1 while a clock-event (throttle) reason is active, per GPU and "
                   "reason (idle is left out).", "none",
                   Target(f'max by (instance, gpu, reason) (nvidia_gpu_clock_event_active{{reason!="gpu_idle", '
                          f"{g}}})", f"{legend} {{{{reason}}}}"), min_value=0, max_value=1),
        timeseries("ECC errors", "ECC errors per GPU in each interval, by type; any uncorrected error pages "
                   "(GPUEccUncorrectedErrors).", "short",
                   Target(f"sum by (instance, gpu, type) (increase(nvidia_gpu_ecc_errors_total{{{g}}}{RI}))",
                          f"{legend} {{{{type}}}}")),
        timeseries("Xid events", "Xid errors per GPU in each interval, by Xid code (GPUXidErrors).", "short",
                   Target(f"sum by (instance, gpu, xid) (increase(nvidia_gpu_xid_errors_total{{{g}}}{RI}))",
                          f"{legend} Xid {{{{xid}}}}")),
        timeseries("Row remapping and PCIe replays", "Remapped rows by kind (pending or failure need a reset "
                   "or service) and PCIe replay errors per second.", "short",
                   Target(f"nvidia_gpu_remapped_rows{{{g}}}", f"{legend} rows {{{{kind}}}}"),
                   Target(f"rate(nvidia_gpu_pcie_replay_errors_total{{{g}}}{RI})", f"{legend} PCIe replays/s")),
        table("Models on devices", "Where each loaded model version runs (device cpu or cuda:N) and with which "
              "backend and dtype.", "none",
              Target(f"max by (instance, model, version, backend, device, dtype) (inference_model_info{{{MV}}})",
                     instant=True, table=True), rename={"Value": "loaded"}, width=12),
        table("NVML status", "Why NVML is up or down on each exporter (ok, library_not_found, "
              "driver_not_loaded, no_permission, error) and whether a stale snapshot is served.", "none",
              Target('max by (instance, reason) (nvidia_gpu_nvml_status{instance=~"$instance"}) == 1',
                     instant=True, table=True),
              Target('max by (instance) (nvidia_gpu_snapshot_stale{instance=~"$instance"})', instant=True,
                     table=True),
              rename={"Value #A": "status", "Value #B": "stale snapshot"}, width=12),
        timeseries("Exporter scrape time", "p99 time each exporter collector takes per scrape.", "s",
                   Target(f"histogram_quantile(0.99, sum by (le, instance, collector) (rate("
                          f'exporter_scrape_duration_seconds_bucket{{instance=~"$instance"}}{RI})))',
                          "{{instance}} {{collector}}")),
        timeseries("Exporter collector errors", "Errors from NVML or other underlying calls per second, by "
                   "function and error (unsupported functions are counted once).", "ops",
                   Target(f"sum by (instance, collector, function, error) (rate(exporter_collector_errors_total"
                          f'{{instance=~"$instance"}}{RI}))', "{{instance}} {{function}} {{error}}")),
    ]
    return Dashboard("gpu-fleet", "GPU fleet",
                     "NVIDIA GPUs seen by the exporters: utilisation, memory, temperature, power, clocks and "
                     "hardware errors, next to the serving throughput of the selected model versions.",
                     ["model-monitoring", "gpu"], variables,
                     [*panels[:6], Row("Utilisation and memory", panels[6:10], collapsed=False),
                      Row("Thermals, power and clocks", panels[10:14]), Row("Hardware errors", panels[14:17]),
                      Row("Placement and exporter", panels[17:])], links())


def anomalies() -> Dashboard:
    a = f'anomaly_job=~"$anomaly_job", {MV}'
    variables = base_variables() + [Variable("anomaly_job", "Anomaly job", "label_values(anomaly_score, anomaly_job)")]
    band_panel = timeseries(
        "Expected band: $anomaly_job", "The detector's expected value and the band outside which the score "
        "exceeds 1, for one anomaly job (repeated per selected job).", "short",
        Target(f"anomaly_expected{{{a}}}", "expected"),
        Target(f"anomaly_lower{{{a}}}", "lower"),
        Target(f"anomaly_upper{{{a}}}", "upper"),
        overrides=band("lower", "upper"), fill=0)
    band_panel.options["legend"]["calcs"] = ["lastNotNull"]
    band_panel.repeat = "anomaly_job"
    panels: list[Panel] = [
        timeseries("Anomaly score", "Score per anomaly job and source series; above 1 means anomalous "
                   "(AnomalyScoreHigh once the detector has seen its seasonal period).", "short",
                   Target(f"anomaly_score{{{a}}}", "{{anomaly_job}} {{endpoint}} {{model}} {{version}}"),
                   min_value=0, thresholds=[(None, GREEN), (1, RED)], width=24),
        band_panel,
        bargauge("Anomalous series per job", "Series of each anomaly job scoring above 1 now.", "none",
                 Target('anomaly_job:anomaly_series_anomalous:count{anomaly_job=~"$anomaly_job"}',
                        "{{anomaly_job}}", instant=True), width=6),
        bargauge("Series tracked", "Series with detector state per anomaly job.", "none",
                 Target('sum by (anomaly_job) (anomaly_series_tracked{anomaly_job=~"$anomaly_job"})',
                        "{{anomaly_job}}", instant=True), width=6),
        timeseries("Detector source up", "1 when the anomaly job's last query to Prometheus succeeded.", "none",
                   Target('min by (anomaly_job) (anomaly_source_up{anomaly_job=~"$anomaly_job"})',
                          "{{anomaly_job}}"), min_value=0, max_value=1),
        timeseries("Time since the last scoring pass", "Seconds since each anomaly job last scored "
                   "successfully.", "s",
                   Target('time() - max by (anomaly_job) (anomaly_last_success_timestamp_seconds'
                          '{anomaly_job=~"$anomaly_job"})', "{{anomaly_job}}")),
        timeseries("Detector failures", "Failures per second by anomaly job and reason (source_unreachable, "
                   "source_timeout, source_error, bad_response, fit_error, series_cap).", "ops",
                   Target(f'sum by (anomaly_job, reason) (rate(anomaly_failures_total{{anomaly_job=~"$anomaly_job"}}'
                          f"{RI}))", "{{anomaly_job}} {{reason}}"), stack=True),
        timeseries("Fit and scoring time", "p99 time to refit a job's series and of one scoring pass.", "s",
                   Target(f"histogram_quantile(0.99, sum by (le, anomaly_job) (rate(anomaly_fit_duration_seconds_"
                          f'bucket{{anomaly_job=~"$anomaly_job"}}{RI})))', "fit {{anomaly_job}}"),
                   Target(f"histogram_quantile(0.99, sum by (le, anomaly_job) (rate(anomaly_score_duration_seconds_"
                          f'bucket{{anomaly_job=~"$anomaly_job"}}{RI})))', "score {{anomaly_job}}")),
    ]
    dash = Dashboard("anomalies", "Anomalies",
                     "Anomaly scores of the exporter's statsmodels detectors with their expected bands, and the "
                     "health of the detectors themselves.",
                     ["model-monitoring", "anomaly"], variables, panels, links())
    return dash


def alerts() -> Dashboard:
    firing = 'alertstate="firing", model=~"$model", version=~"$version"'
    panels: list[Panel] = [
        stat("Critical alerts", "Critical alerts firing now (they page).", "none",
             Target(f'count(ALERTS{{severity="critical", {firing}}}) or vector(0)', "critical"),
             thresholds=[(None, GREEN), (1, RED)], width=6),
        stat("Warning alerts", "Warning alerts firing now (they open tickets).", "none",
             Target(f'count(ALERTS{{severity="warning", {firing}}}) or vector(0)', "warning"),
             thresholds=[(None, GREEN), (1, ORANGE)], width=6),
        stat("Info alerts", "Informational alerts firing now, including the always-firing Watchdog.", "none",
             Target(f'count(ALERTS{{severity="info", {firing}}}) or vector(0)', "info"),
             thresholds=[(None, BLUE)], width=6),
        stat("Pending alerts", "Alerts whose condition holds but not yet for their `for` duration.", "none",
             Target('count(ALERTS{alertstate="pending", model=~"$model", version=~"$version"}) or vector(0)',
                    "pending"), thresholds=[(None, GREEN), (1, YELLOW)], width=6),
        alert_list("Alert list", "Firing and pending alert rules with their instances, as Grafana's alerting "
                   "shows Prometheus' rules; each links its runbook (runbook_url)."),
        table("Firing alerts", "Every alert firing now with its labels (from Prometheus' ALERTS series; "
              "silences and inhibitions live in Alertmanager: use the Alertmanager data source in Grafana's "
              "alerting pages).", "none",
              Target(f"ALERTS{{{firing}}}", instant=True, table=True),
              hide=("Time", "__name__", "alertstate", "Value"), height=9),
        timeseries("Firing alerts over time", "Firing alerts by name and severity.", "none",
                   Target(f"sum by (alertname, severity) (ALERTS{{{firing}}})", "{{alertname}} {{severity}}"),
                   stack=True),
        timeseries("Canary roles", "Traffic weight of canary versions (0 < weight < the stable's) and of "
                   "stable versions; canary alerts compare the two and drive rollbacks.", "percentunit",
                   Target(f"job_model_version:inference_model_traffic_weight_canary:ratio{{{MV}}}",
                          "canary {{model}}/{{version}}"),
                   Target(f"job_model_version:inference_model_traffic_weight_stable:ratio{{{MV}}}",
                          "stable {{model}}/{{version}}"), min_value=0, max_value=1),
        timeseries("Rollback webhook actions", "What the inference server did with Alertmanager's webhook "
                   "calls (rollback, ignored) per outcome.", "short",
                   Target(f"sum by (action, outcome) (increase(inference_alert_webhook_actions_total{RI}))",
                          "{{action}} {{outcome}}")),
        timeseries("Notifications by integration", "Notifications Alertmanager sent per second, and failed "
                   "ones, by integration (slack, email, webhook).", "ops",
                   Target(f"sum by (integration) (rate(alertmanager_notifications_total{RI}))", "sent {{integration}}"),
                   Target(f"sum by (integration) (rate(alertmanager_notifications_failed_total{RI}))",
                          "failed {{integration}}")),
        timeseries("Alerts received by Alertmanager", "Alerts Alertmanager received per second from Prometheus, "
                   "by status.", "ops",
                   Target(f"sum by (status) (rate(alertmanager_alerts_received_total{RI}))", "{{status}}")),
        timeseries("Rule evaluation", "Rule evaluation failures per second by group, and the slowest group's "
                   "last evaluation time.", "short",
                   Target(f"sum by (rule_group) (rate(prometheus_rule_evaluation_failures_total{RI}))",
                          "failures/s {{rule_group}}"),
                   Target("max(prometheus_rule_group_last_duration_seconds)", "slowest group (s)")),
        timeseries("Prometheus to Alertmanager", "Alert notifications Prometheus sent per second, and errors.",
                   "ops",
                   Target(f"sum by (alertmanager) (rate(prometheus_notifications_sent_total{RI}))",
                          "sent {{alertmanager}}"),
                   Target(f"sum by (alertmanager) (rate(prometheus_notifications_errors_total{RI}))",
                          "errors {{alertmanager}}")),
    ]
    return Dashboard("alerts", "Alerts",
                     "What is firing now, what fired over time, canary roles and rollbacks, and whether the "
                     "alerting pipeline itself (rules, Prometheus to Alertmanager, notifications) works.",
                     ["model-monitoring", "alerts"], base_variables(), panels, links())


def model_versions() -> Dashboard:
    """Model versions side by side: the figures an A/B (or canary) decision needs, one column per version."""
    def over_range(num: str, den: str) -> str:
        return (f"sum by (model, version) (increase({num}{{{MV}}}[$__range]))\n/\n"
                f"sum by (model, version) (increase({den}{{{MV}}}[$__range]))")

    serving = f"inference_requests_total{{{SERVING}, {MV}}}"
    comparison = table(
        "Versions side by side", "One row per version over the selected time range: traffic weight now, "
        "serving requests, error ratio (5xx and 429), p99 latency, click-through and conversion rates, online "
        "NDCG and MRR (0-1) and revenue. Compare a canary with the stable version before promoting it.", "none",
        Target(f"max by (model, version) (inference_model_traffic_weight_ratio{{{MV}}})", instant=True, table=True),
        Target(f"sum by (model, version) (increase({serving}[$__range]))", instant=True, table=True),
        Target(f'(sum by (model, version) (increase(inference_requests_total{{{SERVING}, status=~"5..|429", {MV}}}'
               f"[$__range])) or sum by (model, version) (increase({serving}[$__range])) * 0)\n/\n"
               f"sum by (model, version) (increase({serving}[$__range]))", instant=True, table=True),
        Target(f"histogram_quantile(0.99, sum by (le, model, version) (increase(inference_request_duration_seconds_"
               f"bucket{{{SERVING}, {MV}}}[$__range])))", instant=True, table=True),
        Target(over_range("business_clicks_total", "business_impressions_total"), instant=True, table=True),
        Target(over_range("business_orders_total", "business_requests_served_total"), instant=True, table=True),
        Target(over_range("business_request_ndcg_sum", "business_request_ndcg_count"), instant=True, table=True),
        Target(over_range("business_click_reciprocal_rank_sum", "business_click_reciprocal_rank_count"),
               instant=True, table=True),
        Target(f"sum by (model, version) (increase(business_revenue_total{{{MV}}}[$__range]))", instant=True,
               table=True),
        rename={"Value #A": "traffic weight", "Value #B": "requests", "Value #C": "error ratio",
                "Value #D": "p99 latency (s)", "Value #E": "CTR", "Value #F": "conversion", "Value #G": "NDCG",
                "Value #H": "MRR", "Value #I": "revenue (USD)"}, height=7)
    per_version = f"sum by (model, version) (rate({{metric}}{{{{{MV}}}}}{RI}))"
    overlays = [
        timeseries("Click-through rate by version", "Clicks per impression of each version.", "percentunit",
                   Target(_ratio(f"rate(business_clicks_total{{{MV}}}{RI})",
                                 f"rate(business_impressions_total{{{MV}}}{RI})", "model, version"),
                          "{{model}}/{{version}}"), min_value=0),
        timeseries("Conversion rate by version", "Orders per served request of each version.", "percentunit",
                   Target(_ratio(f"rate(business_orders_total{{{MV}}}{RI})",
                                 f"rate(business_requests_served_total{{{MV}}}{RI})", "model, version"),
                          "{{model}}/{{version}}"), min_value=0),
        timeseries("Error ratio by version", "Share of each version's serving requests answered 5xx or 429 "
                   "(what CanaryErrorRatioRegression compares).", "percentunit",
                   Target(f"job_model_version:inference_serving_request_errors:ratio_rate5m{{{MV}}}",
                          "{{model}}/{{version}}"), min_value=0),
        timeseries("p99 latency by version", "99th percentile latency of each version's serving requests "
                   "(what CanaryLatencyRegression compares).", "s",
                   Target(f"histogram_quantile(0.99, sum by (le, model, version) (rate(inference_request_duration_"
                          f"seconds_bucket{{{SERVING}, {MV}}}{RI})))", "{{model}}/{{version}}")),
        timeseries("Online NDCG by version", "Mean NDCG@k (0-1) of each version's clicked requests, observed "
                   "when a request leaves the feedback join window.", "none",
                   Target(per_version.format(metric="business_request_ndcg_sum") + " / "
                          + per_version.format(metric="business_request_ndcg_count"), "{{model}}/{{version}}"),
                   min_value=0, max_value=1),
        timeseries("Traffic weight by version", "Share of live traffic each version gets (a rollback sets a "
                   "canary's weight to 0).", "percentunit",
                   Target(f"max by (model, version) (inference_model_traffic_weight_ratio{{{MV}}})",
                          "{{model}}/{{version}}"), min_value=0, max_value=1),
    ]
    return Dashboard("model-versions", "Model versions side by side",
                     "The figures an A/B or canary decision needs, per model version next to each other: "
                     "traffic, errors, latency, click-through, conversion, online ranking quality and revenue.",
                     ["model-monitoring", "ab-test", "model-lifecycle"], base_variables(),
                     [comparison, Row("Versions over time", overlays, collapsed=False)], links())


def all_dashboards() -> list[Dashboard]:
    return [service_overview(), batching(), business(), model_health(), gpu_fleet(), anomalies(), alerts(),
            model_versions()]
