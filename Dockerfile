# The remediator worker image used by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# The dependencies from the lock, exact versions checked against their sha256 hashes (and
# a layer of their own, rebuilt only when the lock changes), then the project alone.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY streams ./streams
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
 && useradd --system --uid 10001 --home-dir /var/lib/remediator --create-home remediator

USER remediator
ENV REMEDIATOR_DATA_DIR=/var/lib/remediator \
    REMEDIATOR_WEB_HOST=0.0.0.0 \
    REMEDIATOR_WEB_PORT=6066
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:6066/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["remediator"]
CMD ["worker"]
