# graphhook: one image for every process (web, worker, renewer, check). See deploy/README.md.
#   docker build -t graphhook:0.1.0 .
#   docker run --env-file graphhook.env -p 8000:8000 graphhook:0.1.0                 # web
# Metrics: the gunicorn master serves them on GRAPHHOOK_METRICS_BIND:GRAPHHOOK_METRICS_PORT (9108), loopback
# unless you set GRAPHHOOK_METRICS_BIND=0.0.0.0 — then never publish 9108 where the internet reaches it.
#   docker run --env-file graphhook.env graphhook:0.1.0 graphhook worker             # worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY receiver ./receiver
COPY workers ./workers
COPY emulator ./emulator
COPY graphhook ./graphhook
RUN pip install . && rm -rf /src/build

# A configuration that watches no mailbox, so a fresh container starts; mount your own over it.
COPY deploy/graphhook.starter.yaml /etc/graphhook/graphhook.yaml

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin graphhook
USER 10001
WORKDIR /tmp

ENV GRAPHHOOK_CONFIG=/etc/graphhook/graphhook.yaml \
    PROMETHEUS_MULTIPROC_DIR=/tmp/graphhook-metrics \
    PORT=8000
EXPOSE 8000 9108

# exec: gunicorn becomes PID 1 and receives SIGTERM itself (graceful stop).
CMD ["sh", "-c", "exec gunicorn -c python:receiver.gunicorn_conf 'receiver.app:create_app()' --bind 0.0.0.0:${PORT} --workers ${WEB_CONCURRENCY:-2} --worker-connections ${GUNICORN_WORKER_CONNECTIONS:-1000} --timeout ${GUNICORN_TIMEOUT:-30} --graceful-timeout ${GUNICORN_GRACEFUL_TIMEOUT:-20} --access-logfile -"]
