# Stand-in for axllent/mailpit (Docker Hub cannot be reached here): the project's Slack/SMTP sink
# (docker/standins/mailpit_standin.py) taking mail on 1025 without AUTH and serving the web side on
# 8025, as mailpit does; `/mailpit readyz` answers like mailpit's, for the compose healthcheck.
# The sink's JSON API (/api/mails) is not mailpit's: only the compose test reads it.
# Used only by the compose test (docker/compose.standins.yml); built by docker/build_images.sh.
ARG APP_IMAGE=ecommerce-model-monitoring:0.1.0
FROM ${APP_IMAGE}
USER root
RUN --mount=type=secret,id=pip_conf --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi; \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    pip install "aiosmtpd>=1.4,<2" \
    && printf '#!/bin/sh\n[ "$1" = readyz ] || { echo "stand-in: only readyz" >&2; exit 2; }\nexec python -c "import urllib.request; urllib.request.urlopen(\\"http://127.0.0.1:8025/healthz\\", timeout=3)"\n' > /mailpit \
    && chmod 0755 /mailpit
COPY mailpit_standin.py /usr/local/lib/mailpit_standin.py
USER app
EXPOSE 8025 1025
ENTRYPOINT ["python", "/usr/local/lib/mailpit_standin.py"]
