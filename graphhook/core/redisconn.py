"""One way to open Redis from settings, for every process (``redis://``, ``rediss://``, ``unix://``)."""

from __future__ import annotations

import ssl

import redis

from graphhook.core.settings import Settings

_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


def connect(settings: Settings, **kwargs: object) -> redis.Redis:
    """A client for ``REDIS_URL``; ``rediss://`` honours REDIS_SSL_CERT_REQS and REDIS_SSL_CA_CERTS.

    A private CA (a self-hosted Redis, a managed one with its own CA) is verified through
    REDIS_SSL_CA_CERTS, so ``REDIS_SSL_CERT_REQS=none`` is left for a server whose certificate
    nothing can verify (Heroku Redis). redis-py checks the host name whenever certificates are
    verified (``ssl_check_hostname``, on by default since redis-py 6).
    """
    settings.require("REDIS_URL")
    options: dict = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0, "health_check_interval": 30}
    if settings.redis_url.startswith("rediss://"):
        options["ssl_cert_reqs"] = _CERT_REQS[settings.redis_ssl_cert_reqs]
        if settings.redis_ssl_ca_certs:
            options["ssl_ca_certs"] = settings.redis_ssl_ca_certs
    options.update(kwargs)
    return redis.Redis.from_url(settings.redis_url, **options)
