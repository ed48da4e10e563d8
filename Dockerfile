# The project image, CPU variant: inference server, exporter and traffic simulator (one image, three
# commands). GPU variant: Dockerfile.gpu.
#
#   docker build -t ecommerce-model-monitoring:0.1.0 .        (`docker compose build` does the same)
#
# Needs BuildKit (the default builder since Docker 23; Docker 20.10: DOCKER_BUILDKIT=1) for the
# RUN --mount lines below. No `# syntax=` line on purpose: that would pull the Dockerfile frontend
# image from Docker Hub, and the built-in frontend (Docker 20.10+) has everything used here.
#
# Build arguments (defaults are what a machine with internet access wants):
#   BASE_IMAGE       any Debian/Ubuntu-like image with python3 (3.11+) and its venv module
#   TORCH_INDEX_URL  the index of the CPU torch wheel; empty: pip's own index settings (pip_conf below)
#   WHEELS_IMAGE     an image whose / holds wheels pip may use first (e.g. a local torch CPU
#                    wheel); with buildx, `--build-context wheels=DIR` does the same
# Optional build secrets, only ever mounted for the pip commands (never in a layer or the history):
#   pip_conf         a pip.conf (index-url, extra-index-url, timeout, ...)
#   pip_cert         a CA bundle for pip (behind a TLS-intercepting proxy)
# docker/build_images.sh builds this image with them on a machine that cannot reach Docker Hub.
ARG BASE_IMAGE=python:3.11-slim
ARG WHEELS_IMAGE=scratch

FROM ${WHEELS_IMAGE} AS wheels

FROM ${BASE_IMAGE}
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/app/var/cache/huggingface \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# A virtualenv works the same on python:3.11-slim and on Debian's python3 (whose system pip is
# externally managed), so the rest of the file does not depend on the base.
RUN python3 -m venv /opt/venv \
    && useradd --system --uid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin app

WORKDIR /app

# torch first, the CPU build (PyPI's default Linux wheel drags in several GB of CUDA libraries).
RUN --mount=type=bind,from=wheels,target=/wheels \
    --mount=type=secret,id=pip_conf --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi; \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    pip install --find-links /wheels ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0+cpu \
    && python -c "import torch; assert torch.version.cuda is None, torch.__version__"

# The other dependencies, read from pyproject.toml (cached while only the source changes).
COPY pyproject.toml ./
RUN --mount=type=bind,from=wheels,target=/wheels \
    --mount=type=secret,id=pip_conf --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi; \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --find-links /wheels -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# ---- the project's packages and data: the one place to update when packages move ----------------
COPY inference_server ./inference_server
COPY exporter ./exporter
COPY typed_config ./typed_config
COPY loadgen ./loadgen
COPY devstack ./devstack
COPY config ./config
COPY models ./models
# --------------------------------------------------------------------------------------------------
COPY README.md ./

# Editable, so the packages find config/ and models/ beside them in /app.
RUN --mount=type=secret,id=pip_conf --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi; \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    pip install --no-deps -e . \
    && rm -rf /app/build \
    && mkdir -p /app/var/cache /app/var/log /app/var/model-repository \
    && chown -R app /app/var

# Writable state lives under /app/var (embedding cache, request log, model-repository artefacts); the
# directories exist here, owned by `app`, so named volumes mounted on them inherit that ownership.
USER app
EXPOSE 8000 9400 9500
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["python", "-m", "inference_server", "--config", "config/inference_server.yaml"]
