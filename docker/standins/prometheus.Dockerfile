# Stand-in for prom/prometheus (Docker Hub cannot be reached here): Debian's prometheus package with
# the upstream image's interface -- /bin/prometheus and /bin/promtool, /etc/prometheus/prometheus.yml,
# the console files under /usr/share/prometheus, data in /prometheus, user nobody, port 9090, the same
# ENTRYPOINT and CMD -- plus busybox's wget, which upstream's busybox base has (compose healthchecks).
# Used only by the compose test (docker/compose.standins.yml); built by docker/build_images.sh.
ARG BASE_IMAGE=local/python:3.11-bookworm
FROM ${BASE_IMAGE}
RUN set -eux; apt-get update -qq; mkdir /tmp/debs; cd /tmp/debs; \
    apt-get download -qq prometheus busybox-static 2>/dev/null; \
    for deb in *.deb; do dpkg-deb -x "$deb" /tmp/root; done; \
    install -m 0755 /tmp/root/usr/bin/prometheus /tmp/root/usr/bin/promtool /bin/; \
    install -m 0755 /tmp/root/bin/busybox /bin/busybox; ln -s /bin/busybox /bin/wget; \
    mkdir -p /etc/prometheus /usr/share/prometheus /prometheus; \
    cp /tmp/root/etc/prometheus/prometheus.yml /etc/prometheus/prometheus.yml; \
    if [ -d /tmp/root/usr/share/prometheus ]; then cp -r /tmp/root/usr/share/prometheus/. /usr/share/prometheus/; fi; \
    chown -R nobody:nogroup /etc/prometheus /prometheus; \
    rm -rf /tmp/debs /tmp/root /var/lib/apt/lists/*; \
    /bin/prometheus --version
USER nobody
EXPOSE 9090
VOLUME ["/prometheus"]
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
