"""``graphhook check``: the public URL (validation handshake), Redis and the configuration file.

Each function returns :class:`workers.check.checklist.Result` values with a fix for
every failure; none raises for a problem it was asked to look for.
"""

from __future__ import annotations

import secrets
import ssl
import time
from typing import Any, Callable
from urllib.parse import quote, urlsplit, urlunsplit

import redis
import requests

from graphhook.core.errors import ConfigError, GraphhookError
from graphhook.core.redisconn import connect
from graphhook.core.settings import Settings
from workers.check.checklist import FAIL, OK, WARN, Result

HANDSHAKE_SECONDS = 10.0  # Graph gives the endpoint 10 s to echo the token (graph-protocol.md §1)
MIN_REDIS = (5, 0)  # RQ's oldest supported Redis


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for REDIS_URL in messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    netloc = f"{user}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# --- the public URL ------------------------------------------------------------------------

def _handshake_token() -> str:
    # Like Graph's real tokens: spaces and colons, so a receiver that echoes it still encoded fails.
    return f"Validation: Testing client application reachability for subscription Request-Id: {secrets.token_hex(8)}"


def check_handshake(public_url: str, path: str, session: requests.Session | None = None,
                    timeout: float = HANDSHAKE_SECONDS) -> Result:
    """POST ``{public_url}{path}?validationToken=…`` as Graph does; expect 200 text/plain echo in time."""
    name = f"handshake {path}"
    url = f"{public_url}{path}"
    token = _handshake_token()
    http = session or requests.Session()
    started = time.monotonic()
    try:
        reply = http.post(f"{url}?validationToken={quote(token)}", data=b"",
                          headers={"Content-Type": "text/plain; charset=utf-8"}, timeout=timeout,
                          allow_redirects=False)
    except requests.exceptions.SSLError:
        return Result(name, FAIL, f"{url}: its TLS certificate is not trusted",
                      "Graph only posts to https with a certificate from a public CA: put the web process behind\n"
                      "a proxy or load balancer with a valid certificate (Heroku and most ingresses do this for you).")
    except requests.exceptions.Timeout:
        return Result(name, FAIL, f"{url} did not answer within {timeout:g} s",
                      "Graph gives up after 10 s and refuses the subscription: check that the web process is\n"
                      "running and not starved (WEB_CONCURRENCY, GUNICORN_TIMEOUT), and nothing in front of it buffers.")
    except requests.RequestException as exc:
        return Result(name, FAIL, f"{url} cannot be reached ({type(exc).__name__})",
                      "check that the web process is running and that PUBLIC_URL is its external address\n"
                      "(Heroku: https://<app>.herokuapp.com; Kubernetes: the ingress host).")
    elapsed = time.monotonic() - started
    if elapsed > timeout:  # requests' timeout bounds each read, Graph's bounds the whole answer
        return Result(name, FAIL, f"{url} answered after {elapsed:.1f} s; Graph gives up after {timeout:g} s",
                      "check that the web process is not starved (WEB_CONCURRENCY, GUNICORN_WORKER_CONNECTIONS)\n"
                      "and that nothing in front of it buffers or delays requests.")
    ctype = reply.headers.get("Content-Type", "")
    if reply.status_code != 200:
        hint = ("is PUBLIC_URL the base URL, without /notifications?" if reply.status_code in (404, 405)
                else "see the web process's log")
        where = f" (redirects to {reply.headers['Location']!r}; Graph does not follow redirects)" \
            if 300 <= reply.status_code < 400 and "Location" in reply.headers else ""
        return Result(name, FAIL, f"{url} answered {reply.status_code}, not 200{where}",
                      f"the receiver answers the handshake on POST /notifications and /lifecycle: {hint}")
    if not ctype.startswith("text/plain"):
        return Result(name, FAIL, f"{url} answered with Content-Type {ctype!r}, not text/plain",
                      "is something other than graphhook's receiver answering at PUBLIC_URL?")
    if reply.text != token:
        encoded = reply.text == quote(token)
        return Result(name, FAIL, f"{url} did not echo the token exactly"
                      + (" (it echoed it URL-encoded)" if encoded else ""),
                      "Graph compares the body with the decoded validationToken byte for byte;\n"
                      "is something other than graphhook's receiver answering at PUBLIC_URL?")
    return Result(name, OK, f"{url} echoed the validation token in {elapsed * 1000:.0f} ms")


def check_public_url(public_url: str, session: requests.Session | None = None,
                     timeout: float = HANDSHAKE_SECONDS) -> list[Result]:
    """PUBLIC_URL is https and both endpoints answer the validation handshake."""
    if not public_url:
        return [Result("PUBLIC_URL", FAIL, "not set",
                       "set PUBLIC_URL to the external https base URL of the web process, e.g. https://<app>.herokuapp.com")]
    if not public_url.startswith("https://"):
        return [Result("PUBLIC_URL", FAIL, f"{public_url!r} is not https",
                       "Graph only delivers to https:// URLs: use the https address of your app or ingress")]
    results = [Result("PUBLIC_URL", OK, f"{public_url} is https")]
    results += [check_handshake(public_url, path, session, timeout) for path in ("/notifications", "/lifecycle")]
    return results


# --- Redis ------------------------------------------------------------------------------------

def _redis_failure(settings: Settings, exc: Exception) -> Result:
    where = redact_url(settings.redis_url)
    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return Result("redis", FAIL, f"{where} refused the password",
                      "copy REDIS_URL again from your Redis provider (Heroku: `heroku config:get REDIS_URL`)")
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return Result("redis", FAIL, f"{where}: the server's TLS certificate is not trusted",
                      "a certificate from a private CA: set REDIS_SSL_CA_CERTS to that CA's PEM file;\n"
                      "one nothing can verify (Heroku Redis is self-signed): set REDIS_SSL_CERT_REQS=none.")
    if settings.redis_url.startswith("rediss://") and ("WRONG_VERSION_NUMBER" in text or "wrong version" in text):
        return Result("redis", FAIL, f"{where} does not speak TLS",
                      "use redis:// for this server, or its TLS port with rediss://")
    return Result("redis", FAIL, f"{where} cannot be reached ({type(exc).__name__}: {text.splitlines()[0][:120] if text else ''})",
                  "check REDIS_URL (host, port, database) and that Redis is running and reachable from here;\n"
                  "a TLS-only server needs rediss://")


def check_redis(settings: Settings, client: redis.Redis | None = None) -> list[Result]:
    """Ping Redis, report its version, and warn unless ``maxmemory-policy`` is ``noeviction``."""
    if not settings.redis_url and client is None:
        return [Result("redis", FAIL, "REDIS_URL is not set",
                       "set REDIS_URL (redis://host:6379/0, or rediss:// for TLS; Heroku sets it with the add-on)")]
    try:
        r = client or connect(settings, socket_connect_timeout=5.0, socket_timeout=5.0)
        r.ping()
        # INFO works where CONFIG is disabled (Heroku Redis and other managed services).
        info = r.info("server") | r.info("memory")
    except (redis.RedisError, ssl.SSLError, OSError) as exc:
        return [_redis_failure(settings, exc)]
    version = str(info.get("redis_version", "?"))
    results = []
    try:
        numbers = tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        numbers = MIN_REDIS
    tls = " over TLS" if settings.redis_url.startswith("rediss://") else ""
    if numbers < MIN_REDIS:
        results.append(Result("redis", FAIL, f"Redis {version} is too old for RQ",
                              f"upgrade to Redis {'.'.join(map(str, MIN_REDIS))} or newer"))
    else:
        results.append(Result("redis", OK, f"{redact_url(settings.redis_url)} answered PING (Redis {version}{tls})"))
    policy = str(info.get("maxmemory_policy", "?"))
    if policy == "noeviction":
        results.append(Result("redis maxmemory-policy", OK, "noeviction: queued jobs are never evicted"))
    else:
        results.append(Result("redis maxmemory-policy", WARN,
                              f"{policy}: when Redis fills up it may evict queued jobs, and that mail is never processed",
                              "set maxmemory-policy noeviction (Heroku: `heroku redis:maxmemory --policy noeviction`;\n"
                              "elsewhere: `CONFIG SET maxmemory-policy noeviction` and in redis.conf)"))
    return results


# --- the configuration file -----------------------------------------------------------------

def check_config(path: str, validate: Callable[[str], Any] | None = None) -> tuple[Result, Any]:
    """Validate the YAML configuration file ``GRAPHHOOK_CONFIG``; return the result and the loaded config."""
    name = "configuration"
    if validate is None:
        from workers.triggers.config import validate_config as validate
    try:
        config = validate(path)
    except ConfigError as exc:
        if "not found" in str(exc):
            return Result(name, FAIL, str(exc),
                          "set GRAPHHOOK_CONFIG to your configuration file, or create it\n"
                          "(deploy/graphhook.starter.yaml watches no mailbox; graphhook.example.yaml shows every feature)"), None
        return Result(name, FAIL, f"invalid: {exc}",
                      "fix the file named by GRAPHHOOK_CONFIG, then run `graphhook check --config-only`"), None
    except GraphhookError as exc:
        return Result(name, FAIL, f"{path}: {exc}", "fix the file named by GRAPHHOOK_CONFIG"), None
    tenants = getattr(config, "tenants", ()) or ()
    mailboxes = len(getattr(config, "mailboxes", ())) + sum(len(t.mailboxes) for t in tenants)
    rules = len(getattr(config, "rules", ()))
    counted = f"{len(tenants)} tenant(s), " if tenants else ""
    return Result(name, OK, f"{path} is valid ({counted}{mailboxes} mailbox(es), {rules} rule(s))"), config
