# graphhook: one image for every process (web, worker, renewer, check). See deploy/README.md.
#   docker build -t graphhook:0.1.0 .
#   docker run --env-file graphhook.env -p 127.0.0.1:8000:8000 graphhook:0.1.0                 # web
# Metrics: the gunicorn master serves them on GRAPHHOOK_METRICS_BIND:GRAPHHOOK_METRICS_PORT (9108), loopback
# unless you set GRAPHHOOK_METRICS_BIND=0.0.0.0 — then never publish 9108 where the internet reaches it.
#   docker run --env-file graphhook.env graphhook:0.1.0 graphhook worker             # worker
#
# The base image is pinned by digest (both stages), so a rebuild gets the same Python and Debian; the
# dependencies by constraints.txt. Refresh both on purpose: deploy/README.md "Refreshing the pins".

# --- build: install graphhook and its pinned dependencies into a virtualenv ----------------------------
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7 AS build

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY constraints.txt setup.cfg pyproject.toml README.md ./
COPY receiver ./receiver
COPY workers ./workers
COPY emulator ./emulator
COPY graphhook ./graphhook
RUN python -m venv /opt/graphhook \
    && /opt/graphhook/bin/pip install -c constraints.txt .

# --- runtime: the virtualenv, an unprivileged user with a home, nothing of the build ---------------
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/graphhook/bin:$PATH

# A home the user can write: gunicorn 27 opens its control socket in $HOME/.gunicorn/ (without one it logs
# "Control server error" at every start). On a read-only root (Kubernetes) the web pod mounts an emptyDir here.
RUN groupadd --system --gid 10001 graphhook \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/graphhook --create-home \
       --shell /usr/sbin/nologin graphhook
COPY --from=build /opt/graphhook /opt/graphhook

# A configuration that watches no mailbox, so a fresh container starts; mount your own over it.
COPY deploy/graphhook.starter.yaml /etc/graphhook/graphhook.yaml

USER 10001
WORKDIR /home/graphhook

ENV HOME=/home/graphhook \
    GRAPHHOOK_CONFIG=/etc/graphhook/graphhook.yaml \
    PROMETHEUS_MULTIPROC_DIR=/tmp/graphhook-metrics \
    PORT=8000
EXPOSE 8000 9108

# Whatever the container runs: gunicorn → GET /readyz on its port; `graphhook worker` → this container's RQ
# heartbeat in Redis; `graphhook renewer` → its last loop in Redis (graphhook probe, deploy/README.md "Probes").
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["graphhook", "probe", "auto"]

# exec: gunicorn becomes PID 1 and receives SIGTERM itself (graceful stop).
CMD ["sh", "-c", "exec gunicorn -c python:receiver.gunicorn_conf 'receiver.app:create_app()' --bind 0.0.0.0:${PORT} --workers ${WEB_CONCURRENCY:-2} --worker-connections ${GUNICORN_WORKER_CONNECTIONS:-1000} --timeout ${GUNICORN_TIMEOUT:-30} --graceful-timeout ${GUNICORN_GRACEFUL_TIMEOUT:-20} --access-logfile -"]
