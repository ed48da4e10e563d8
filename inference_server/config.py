"""Server configuration: every section declared here, validated by pydantic, with env overrides.

`AppConfig` lists every top-level section with its type, so the schema does not depend on which
modules were imported first (no registration at import time). Validation is strict (the shared
`typed_config.Section`): an unknown, missing or ill-typed key is a `ConfigError` naming the dotted
key (``batching.max_batch_size: Input should be a valid integer, got 'x'``); cross-field rules are
model validators that blame the key at fault.

This module depends only on `typed_config`, pydantic and the two section types owned by other
packages (`ModelSpec`, `CatalogConfig`), which do not import it back.

Env overrides: ``INFERENCE_SERVER__SECTION__KEY=value`` (nested keys joined by ``__``, matched
case-insensitively; the value is parsed as YAML, so ``16`` is an int and ``false`` a bool).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional

from pydantic import ConfigDict, Field, model_validator

import typed_config
from typed_config import ConfigError, Section, invalid, parse_section

from inference_server.catalog.types import CatalogConfig, IndexConfig
from inference_server.models.backend import ModelSpec

__all__ = [
    "ABTestConfig",
    "AdmissionConfig",
    "AdminConfig",
    "AppConfig",
    "BatchingConfig",
    "ConfigError",
    "DriftConfig",
    "ENV_PREFIX",
    "FeedbackConfig",
    "HealthConfig",
    "LimitsConfig",
    "ModelRepositoryConfig",
    "RequestLogConfig",
    "ServerConfig",
    "SplitStoreConfig",
    "TrafficConfig",
    "VersionPolicy",
    "apply_env_overrides",
    "config_to_dict",
    "load_config",
    "parse_config",
]

ENV_PREFIX = "INFERENCE_SERVER"  # variables are INFERENCE_SERVER__SECTION__KEY
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "config" / "inference_server.yaml"

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveNumber = Annotated[float, Field(gt=0, allow_inf_nan=False)]
VERSION_PATTERN = r"^[1-9][0-9]{0,8}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"


# ---------------------------------------------------------------------------------------------
# Serving core
# ---------------------------------------------------------------------------------------------


class LimitsConfig(Section):
    """Request size limits; requests beyond them get a 400 `validation` error naming the field."""

    model_config = ConfigDict(frozen=True)  # hashable: request models are built (and cached) per limits

    max_query_chars: PositiveInt = 512
    max_title_chars: PositiveInt = 1000
    max_id_chars: PositiveInt = 128
    max_k: PositiveInt = 100
    max_items: PositiveInt = 200
    max_history: PositiveInt = 100


class ServerConfig(Section):
    """HTTP listener and per-request limits."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    max_body_bytes: PositiveInt = 262144
    request_timeout_ms: PositiveInt = 2000
    retry_after_s: PositiveInt = 1            # Retry-After on 429 queue_full / 503 / 504
    not_ready_retry_after_s: PositiveInt = 5  # Retry-After on 503 not_ready while loading
    access_log: bool = False                  # aiohttp's access log (the JSON request log is separate)
    # auto: uvloop when installed (it is a dependency on Linux and macOS), else asyncio's own loop.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    # How long the event loop may keep the GIL from a model thread that wants it back after a pass
    # (Python's default is 5 ms; sys.setswitchinterval). Shorter keeps the model busier under load.
    gil_switch_interval_ms: Annotated[float, Field(gt=0, le=100)] = 0.5
    # Slow and broken clients (docs/server.md, "Slow clients and shutdown").
    keepalive_timeout_s: PositiveNumber = 5.0    # complete request headers due this long after connect / last response
    body_timeout_s: PositiveNumber = 10.0        # whole body due this long after the headers -> 408 timeout
    max_connections: PositiveInt = 1024          # open connections; beyond -> canned 503, closed
    max_requests_in_flight: PositiveInt = 512    # requests being handled; beyond -> 503 overloaded
    shutdown_timeout_s: PositiveNumber = 30.0    # SIGTERM: how long in-flight requests may finish
    limits: LimitsConfig = Field(default_factory=LimitsConfig)


class AdmissionConfig(Section):
    """`batching.admission`: admit work only when its predicted queue wait + compute fits its deadline."""

    enabled: bool = True
    # Admitted only if predicted wait + compute <= remaining deadline * (1 - deadline_margin); the answer
    # is due by then: texts that a batch would finish later are shed (`late`), not computed.
    deadline_margin: Annotated[float, Field(ge=0, lt=1)] = 0.1
    max_queue_wait_ms: PositiveNumber = 500.0    # the queue bounded in time: longer predicted waits are shed
    min_windows: PositiveInt = 3                 # windows measured before predictions are trusted
    cost_decay: Annotated[float, Field(gt=0, lt=1)] = 0.9   # forgetting factor of the window-cost fit


class BatchingConfig(Section):
    """Dynamic batching of text-encoding work (see docs/server.md)."""

    enabled: bool = True
    max_batch_size: PositiveInt = 32
    max_queue_delay_ms: Annotated[float, Field(ge=0)] = 2.0
    max_queue_size: PositiveInt = 512
    # A collection window holds up to max_batch_size * window_batches texts; it is sorted by token
    # length and cut into batches, so texts of similar length share a batch (less padding).
    window_batches: PositiveInt = 4
    # While every instance is busy, take the next window ahead once 1/(instances + 1) of the texts in
    # the server wait (pipelined), not only once a full window waits: a finishing instance then finds
    # work queued instead of idling while its answers go out (docs/server.md, "Dynamic batching").
    pipeline: bool = True
    # Model instances per version: batches that run at the same time, each in its own worker
    # thread (Triton's instance count). 1 keeps latency lowest at moderate load; None = auto (the
    # usable CPU cores on CPU, torch threads split between them; 1 on a GPU) adds throughput under
    # heavy load (docs/server.md, "Model instances").
    instances: Optional[PositiveInt] = 1
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)

    @property
    def effective_batch_size(self) -> int:
        return self.max_batch_size if self.enabled else 1


class RequestLogConfig(Section):
    """JSON-lines request log with size-based rotation. The user-id salt is a secret: env or file only."""

    enabled: bool = True
    path: str = "var/log/requests.jsonl"
    max_bytes: PositiveInt = 10_485_760
    backups: NonNegativeInt = 5
    user_id_salt_env: str = "INFERENCE_SERVER_USER_ID_SALT"
    user_id_salt_file: Optional[str] = None
    # The query text of /v1/search and /v1/rank lines, for the click log (`python -m inference_server.click_log`).
    # Queries can hold personal data (docs/server.md, "Request log"): false leaves them out.
    log_queries: bool = True
    max_query_chars: PositiveInt = 256           # longer queries are logged truncated to this many characters


# ---------------------------------------------------------------------------------------------
# Model lifecycle
# ---------------------------------------------------------------------------------------------


class VersionPolicy(Section):
    """Which versions the server loads at start: `latest` N, `all`, or the `specific` ones listed.

    The default loads version 1 only: the repository also ships a deliberately degraded version 2 for
    drills, which must never take traffic just because it is the newest.
    """

    kind: Literal["latest", "all", "specific"] = "specific"
    num_versions: PositiveInt = 1
    versions: list[Annotated[str, Field(pattern=VERSION_PATTERN)]] = Field(default_factory=lambda: ["1"])

    @model_validator(mode="after")
    def _versions_listed(self) -> "VersionPolicy":
        if self.kind == "specific" and not self.versions:
            raise invalid("versions", "list the versions to load when kind is 'specific'")
        return self


class ModelRepositoryConfig(Section):
    """`model_repository:` section: where versions live and what is loaded and checked at start."""

    enabled: bool = True                       # false: serve only the `model:` section (no lifecycle)
    root: str = "models"                       # relative paths resolve against the working directory
    state_dir: str = "var/model-repository"    # artefacts written at registration
    version_policy: VersionPolicy = Field(default_factory=VersionPolicy)
    # Removed behaviour, kept as a key so old configs fail clearly: the server never registers (writes the
    # artefacts of) a version it is about to check; register with `make register` / the training command.
    register_missing: Literal[False] = False
    golden_queries: PositiveInt = 16           # fixed queries of the golden set
    golden_k: PositiveInt = 10
    drift_reference_queries: PositiveInt = 500  # judged queries used for the drift reference
    eval_k: PositiveInt = 10                   # NDCG@k of the offline evaluation


class SplitStoreConfig(Section):
    """`traffic.store:` where the traffic split lives when several replicas must follow one split.

    `memory`: this process only (one replica). `file`: a JSON document on a volume every replica mounts
    (one host), changed under a file lock with a revision check. `configmap`: a Kubernetes ConfigMap,
    changed with resourceVersion preconditions. Replicas poll it every `poll_interval_s`.
    """

    kind: Literal["memory", "file", "configmap"] = "memory"
    path: Optional[str] = None            # file: default <model_repository.state_dir>/traffic/<model>.json
    configmap: str = "inference-traffic-split"
    namespace: Optional[str] = None       # configmap: default the pod's namespace (service account)
    poll_interval_s: PositiveNumber = 1.0
    max_attempts: PositiveInt = 5         # compare-and-swap attempts before a change is refused (409)


class TrafficConfig(Section):
    """`traffic:` section: the split at start (percent or any positive weights) and rollback history."""

    # empty: all traffic to the newest loaded version
    weights: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(default_factory=dict)
    shadow: list[str] = Field(default_factory=list)
    history_size: PositiveInt = 16
    drain_timeout_s: PositiveNumber = 30.0  # how long unload/reload wait for in-flight requests
    store: SplitStoreConfig = Field(default_factory=SplitStoreConfig)

    @model_validator(mode="after")
    def _some_weight(self) -> "TrafficConfig":
        if self.weights and sum(self.weights.values()) <= 0:
            raise invalid("weights", "at least one version needs a weight > 0")
        return self


class HealthConfig(Section):
    """`health:` section."""

    golden_min_cosine: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.99
    golden_min_topk_overlap: Annotated[float, Field(ge=0.0, le=1.0)] = 0.8
    interval_s: Annotated[float, Field(ge=0)] = 60.0  # periodic golden check while serving; 0 turns it off
    deadline_s: PositiveNumber = 30.0                 # a periodic check that takes longer counts as failed


class DriftConfig(Section):
    """`drift:` section of the server config."""

    enabled: bool = True
    window_size: Annotated[int, Field(ge=2)] = 2000  # online values kept per version and feature (most recent)
    min_samples: PositiveInt = 100                    # PSI/KS exported once the window holds this many values
    psi_bins: Annotated[int, Field(ge=2)] = 10        # quantile bins of the reference
    psi_epsilon: Annotated[float, Field(gt=0, lt=0.1)] = 1e-4  # floor of a bin's share

    @model_validator(mode="after")
    def _window_holds_min_samples(self) -> "DriftConfig":
        if self.min_samples > self.window_size:
            raise invalid("min_samples", f"expected 1..window_size ({self.window_size}), got {self.min_samples}")
        return self


class FeedbackConfig(Section):
    """`feedback:` section of the server config."""

    max_requests: PositiveInt = 100_000          # served requests held for joins
    ttl_s: PositiveNumber = 1800.0              # join window per request
    max_event_ids: PositiveInt = 200_000         # event ids remembered for dedup (also dropped after ttl_s)
    max_expired_ids: NonNegativeInt = 100_000    # ids of requests that left the window, to answer expired_request
    sweep_interval_s: PositiveNumber = 1.0      # how often expired requests are swept (NDCG observed then)
    max_events_per_request: PositiveInt = 1000   # events in one POST /v1/feedback
    max_positions: PositiveInt = 100             # result positions kept per request (clicks beyond are rejected)
    max_quantity: PositiveInt = 10               # units one request's product may be bought in total
    max_events_per_s: PositiveNumber = 1000.0    # per event source (client address); beyond -> 429 rate_limited
    # The event source's bearer token (a site's event pipeline holds it): a file, else this env variable.
    # Without one, POST /v1/feedback is off (403). It must differ from the admin and alerts tokens.
    token_file: Optional[str] = None
    token_env: Annotated[str, Field(min_length=1)] = "INFERENCE_FEEDBACK_TOKEN"
    currency: Annotated[str, Field(pattern=CURRENCY_PATTERN)] = "USD"  # revenue currency (label of business_revenue_total)
    # other currency -> units of `currency` per unit
    rates: dict[str, PositiveNumber] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rates_are_currencies(self) -> "FeedbackConfig":
        for code in self.rates:
            if not re.match(CURRENCY_PATTERN, code):
                raise invalid(("rates", code), "not an ISO 4217 code like 'EUR'")
        return self


class AdminConfig(Section):
    """`admin:` section: where the admin and webhook tokens come from (values never in the config)."""

    token_file: Optional[str] = None
    token_env: Annotated[str, Field(min_length=1)] = "INFERENCE_ADMIN_TOKEN"
    # Token Alertmanager presents on POST /v1/alerts (its http_config.authorization.credentials_file);
    # when neither is set the webhook is off; it must differ from the admin token.
    alerts_token_file: Optional[str] = None
    alerts_token_env: Annotated[str, Field(min_length=1)] = "INFERENCE_ALERTS_TOKEN"


# ---------------------------------------------------------------------------------------------
# The whole file
# ---------------------------------------------------------------------------------------------


class ABTestConfig(Section):
    """`ab_test:` section: the sequential A/B test of a canary against the stable version (lifecycle/ab_test.py)."""

    enabled: bool = True
    primary_metric: Literal["ctr", "add_to_cart", "conversion"] = "ctr"   # what promote/rollback decide on
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05      # false-decision rate, valid under continuous monitoring
    mixture_sd: Annotated[float, Field(gt=0, le=1)] = 0.02   # tau: sd of the normal mixture over rate differences
    # Per arm, before any decision. It guards the normal approximation (>= 10 expected events and non-events
    # for rates in 0.07-0.93), not the error rate (the mSPRT keeps that at alpha at any size): 150 is reached
    # by a 20% canary in 2.5 min at the simulator's default 5 req/s (docs/lifecycle.md, "A/B test").
    min_requests: PositiveInt = 150
    endpoints: list[Literal["search", "rank", "recommend"]] = Field(default_factory=lambda: ["search", "rank", "recommend"])


class AppConfig(Section):
    """The whole server configuration: every top-level section, each with its defaults."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    model: ModelSpec = Field(default_factory=ModelSpec)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    request_log: RequestLogConfig = Field(default_factory=RequestLogConfig)
    model_repository: ModelRepositoryConfig = Field(default_factory=ModelRepositoryConfig)
    traffic: TrafficConfig = Field(default_factory=TrafficConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    ab_test: ABTestConfig = Field(default_factory=ABTestConfig)


def parse_config(raw: Mapping[str, Any] | None) -> AppConfig:
    """Validate a raw mapping (parsed YAML, env overrides applied) into an `AppConfig`."""
    return parse_section(AppConfig, raw)


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Apply ``INFERENCE_SERVER__A__B=value`` variables onto `raw` (in place; also returned)."""
    return typed_config.apply_env_overrides(raw, ENV_PREFIX, environ)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> AppConfig:
    """Read the YAML file (default: config/inference_server.yaml if present), apply env overrides, validate."""
    if path is None and DEFAULT_CONFIG_PATH.is_file():
        path = DEFAULT_CONFIG_PATH
    raw = typed_config.load_yaml_mapping(path) if path is not None else {}
    apply_env_overrides(raw, environ)
    return parse_config(raw)


def config_to_dict(config: AppConfig) -> dict[str, Any]:
    """Plain-data view of a config (for `--check-config` and logs)."""
    return config.model_dump()
