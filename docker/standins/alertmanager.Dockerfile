# Stand-in for prom/alertmanager (Docker Hub cannot be reached here): Debian's prometheus-alertmanager
# package with the upstream image's interface -- /bin/alertmanager and /bin/amtool,
# /etc/alertmanager/alertmanager.yml, data in /alertmanager, user nobody, port 9093, the same
# ENTRYPOINT and CMD -- plus the default notification templates, which Debian's build reads from
# /usr/share/prometheus/alertmanager (upstream's binary embeds them), and busybox's wget, which
# upstream's busybox base has (compose healthchecks).
# Used only by the compose test (docker/compose.standins.yml); built by docker/build_images.sh.
ARG BASE_IMAGE=local/python:3.11-bookworm
FROM ${BASE_IMAGE}
RUN set -eux; apt-get update -qq; mkdir /tmp/debs; cd /tmp/debs; \
    apt-get download -qq prometheus-alertmanager busybox-static 2>/dev/null; \
    for deb in *.deb; do dpkg-deb -x "$deb" /tmp/root; done; \
    install -m 0755 /tmp/root/usr/bin/prometheus-alertmanager /bin/alertmanager; \
    install -m 0755 /tmp/root/usr/bin/amtool /bin/amtool; \
    install -m 0755 /tmp/root/bin/busybox /bin/busybox; ln -s /bin/busybox /bin/wget; \
    mkdir -p /etc/alertmanager /alertmanager; \
    cp /tmp/root/etc/prometheus/alertmanager.yml /etc/alertmanager/alertmanager.yml; \
    mkdir -p /usr/share/prometheus; cp -r /tmp/root/usr/share/prometheus/alertmanager /usr/share/prometheus/; \
    chown -R nobody:nogroup /etc/alertmanager /alertmanager; \
    rm -rf /tmp/debs /tmp/root /var/lib/apt/lists/*; \
    /bin/alertmanager --version
USER nobody
EXPOSE 9093
VOLUME ["/alertmanager"]
WORKDIR /alertmanager
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
