# accoil-sync: the package built as a wheel, installed into a slim image, run as a non-root user.
# Default command: `accoil-sync serve` (card backend, health, metrics, scheduled syncs). docs/DEPLOY.md.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE CHANGELOG.md ./
COPY accoil_sync ./accoil_sync
RUN pip install --no-cache-dir build==1.2.2 \
    && python -m build --wheel --outdir /dist

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ACCOIL_SYNC_CONFIG=/config/accoil-sync.toml \
    ACCOIL_SYNC_STATE__PATH=/data/state.db \
    ACCOIL_SYNC_SERVE__HOST=0.0.0.0 \
    ACCOIL_SYNC_LOG__FORMAT=json
RUN groupadd --system --gid 10001 accoil \
    && useradd --system --uid 10001 --gid accoil --home-dir /data --shell /usr/sbin/nologin accoil \
    && mkdir -p /data /config \
    && chown accoil:accoil /data
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/*.whl \
    && rm -rf /tmp/dist
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# slim images have no curl; the health check uses the interpreter the image already has
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["accoil-sync"]
CMD ["serve"]
