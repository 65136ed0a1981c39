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
RUN useradd --system --uid 10001 --home-dir /app plate-bridge
WORKDIR /app
COPY --from=build /wheels /wheels
# [fast]: the reader's HTTP in libcurl (pycurl has glibc wheels; this image is Debian-based).
RUN pip install --no-cache-dir "$(echo /wheels/*.whl)[fast]" && rm -rf /wheels
COPY examples/config.yaml /app/config.yaml
USER plate-bridge
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["plate-bridge"]
CMD ["run", "--config", "/app/config.yaml"]
