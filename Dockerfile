# syntax=docker/dockerfile:1
# The project image, CPU variant: inference server, exporter and traffic simulator (one image, three
# commands). GPU variant: Dockerfile.gpu. Build: docker build -t ecommerce-model-monitoring .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/app/var/cache/huggingface

WORKDIR /app

# torch first, from the PyTorch CPU index: PyPI's default Linux wheel drags in several GB of CUDA libs.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# Dependencies next (cached while only the source changes), then the project itself, editable so the
# packages find config/ and models/ beside them in /app.
COPY pyproject.toml README.md ./
RUN mkdir -p inference_server exporter \
    && touch inference_server/__init__.py exporter/__init__.py \
    && pip install . \
    && pip uninstall -y ecommerce-model-monitoring
COPY inference_server ./inference_server
COPY exporter ./exporter
COPY typed_config ./typed_config
COPY loadgen ./loadgen
COPY devstack ./devstack
COPY config ./config
COPY models ./models
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /app app \
    && mkdir -p /app/var/cache /app/var/log /app/var/model-repository \
    && chown -R app /app/var

# Writable state lives under /app/var (embedding cache, request log, model-repository artefacts); the
# directories exist here, owned by `app`, so named volumes mounted on them inherit that ownership.
USER app
EXPOSE 8000 9400 9500
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)" || exit 1
CMD ["python", "-m", "inference_server", "--config", "config/inference_server.yaml"]
