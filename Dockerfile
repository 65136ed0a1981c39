# plate-bridge: the MQTT bridge as a small container. Configure with a mounted YAML file and/or
# PLATE_BRIDGE__SECTION__KEY environment variables; the token from PLATE_RECOGNIZER_TOKEN.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bridge ./bridge
COPY schemas ./schemas
# Shipped in the wheel for `plate-bridge demo` (pyproject's force-include needs them to build).
COPY examples/images ./examples/images
RUN pip install --no-cache-dir build==1.2.2 && python -m build --wheel --outdir /wheels

FROM python:3.11-slim
# A numeric, unprivileged user: orchestrators that enforce runAsNonRoot can check it without /etc/passwd.
RUN groupadd --system --gid 10001 plate-bridge \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home plate-bridge
WORKDIR /app
COPY --from=build /wheels /wheels
# [fast]: the reader's HTTP in libcurl (pycurl has glibc wheels; this image is Debian-based).
# [postgresql]: `history.url: postgresql://...` for replicas sharing one store.
RUN pip install --no-cache-dir "$(echo /wheels/*.whl)[fast,postgresql]" && rm -rf /wheels
COPY examples/config.yaml /app/config.yaml
# The history store's SQLite file (history.enabled): a volume, so it outlives the container.
RUN mkdir /data && chown 10001:10001 /data
VOLUME ["/data"]
USER 10001:10001
# /metrics, /health/live and /health/ready on port 9108 (the environment wins over the YAML file). The
# HEALTHCHECK asks liveness, which fails only when the process is wedged (its MQTT thread or reader
# workers gone): a broker or cloud that is down is the readiness endpoint's business, since a restart
# cannot heal it and restarting would only lose the frames waiting in the queue.
ENV PYTHONUNBUFFERED=1 \
    PLATE_BRIDGE__METRICS__ENABLED=true \
    PLATE_BRIDGE__METRICS__HOST=0.0.0.0 \
    PLATE_BRIDGE__METRICS__PORT=9108 \
    PLATE_BRIDGE__HISTORY__DATA_DIR=/data
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/health/live', timeout=4)"]
ENTRYPOINT ["plate-bridge"]
CMD ["run", "--config", "/app/config.yaml"]
