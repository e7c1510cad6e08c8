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
# Ready when /healthz answers 200; over https when REMEDIATOR_WEB_TLS_* are set (its own
# port on loopback: the certificate is not checked, it need not name 127.0.0.1).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD python -c "import os,ssl,sys,urllib.request as u; s='https' if os.environ.get('REMEDIATOR_WEB_TLS_CERTFILE') else 'http'; p=os.environ.get('REMEDIATOR_WEB_PORT','6066'); c=ssl._create_unverified_context() if s=='https' else None; sys.exit(0 if u.urlopen(f'{s}://127.0.0.1:{p}/healthz',timeout=2,context=c).status==200 else 1)"
ENTRYPOINT ["remediator"]
CMD ["worker"]
