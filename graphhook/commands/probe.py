"""``graphhook probe web|worker|renewer|auto``: is this host's (pod's, container's) process alive? Exit 0 or 1.

For liveness and readiness probes (Kubernetes ``exec``, Docker ``HEALTHCHECK``). Cheap: one Redis round
trip or one local HTTP GET, no Graph call. The signal is the process's own heartbeat in Redis:

- ``worker``: RQ keeps each worker's hash ``rq:worker:<name>`` (``hostname``, ``pid``, ``birth``) alive
  with heartbeats, and lets it expire when they stop (420 s + 60 s after the last one when idle, the job's
  timeout + 60 s during a job in a non-forking worker). Alive: a hash of this host whose ``pid`` runs here
  and was born after that process started (a key left by the previous container of a restarted pod, same
  host name and pid 1, does not count).
- ``renewer``: every renewer loop, leader or standby, writes ``graphhook:renewer:alive:<host>`` (pid and
  time) with the leader lock's expiry, 3 x ``GRAPHHOOK_RENEW_INTERVAL_SECONDS`` (at least 30 s).
- ``web``: GET ``/readyz`` on the local gunicorn (Redis answers, settings complete).
- ``auto``: finds which of the three runs here (the processes' command lines) and probes it: the image's
  one ``HEALTHCHECK`` works whatever command the container runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterable

KINDS = ("web", "worker", "renewer", "auto")
DEFAULT_WEB_URL = "http://127.0.0.1:8000/readyz"
START_SLACK = dt.timedelta(seconds=2)  # /proc start times are whole seconds of boot time plus clock ticks


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``probe`` to the ``graphhook`` command line."""
    p = sub.add_parser("probe", help="liveness/readiness probe of this host's web, worker or renewer (exit 0/1)")
    p.add_argument("kind", choices=KINDS, help="the process to probe; auto: whichever runs here")
    p.add_argument("--url", default=None, help=f"web only: the URL to GET (default {DEFAULT_WEB_URL})")
    p.add_argument("--json", action="store_true", help='one JSON object on stdout: {"kind", "ok", "detail"}')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kind, url = args.kind, args.url
    if kind == "auto":
        kind, found_url = detect(process_command_lines())
        if kind is None:
            _say(args, "auto", True, "no graphhook web, worker or renewer runs here; nothing to probe")
            return 0
        url = url or found_url
    if kind == "web":
        ok, message = probe_web(url or DEFAULT_WEB_URL)
    else:
        from graphhook.core.redisconn import connect
        from graphhook.core.settings import Settings

        r = connect(Settings.from_env(), socket_connect_timeout=2.0, socket_timeout=2.0)
        try:
            probe = probe_worker if kind == "worker" else probe_renewer
            ok, message = probe(r, hostname=socket.gethostname())
        except Exception as exc:  # noqa: BLE001 — any failure to read the signal is a failed probe
            ok, message = False, f"cannot read {kind} liveness from Redis: {type(exc).__name__}: {exc}"
        finally:
            r.close()
    _say(args, kind, ok, message)
    return 0 if ok else 1


def _say(args: argparse.Namespace, kind: str, ok: bool, message: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"kind": kind, "ok": ok, "detail": message}))
    elif kind == "auto":
        print(f"probe: {message}")
    else:
        print(f"probe {kind}: {message}", file=sys.stdout if ok else sys.stderr)


# --- the checks ----------------------------------------------------------------------------

def probe_worker(r, *, hostname: str, started: Callable[[int], dt.datetime | None] | None = None) -> tuple[bool, str]:
    """(alive, message): an RQ worker of ``hostname`` whose hash has not expired and whose process runs here."""
    from rq import worker_registration

    started = started or process_start
    seen = 0
    for key in sorted(worker_registration.get_keys(connection=r)):
        data = {k.decode(): v.decode() for k, v in r.hgetall(key).items()}
        if data.get("hostname") != hostname or not data.get("pid"):
            continue
        seen += 1
        pid, birth = int(data["pid"]), _parse(data.get("birth"))
        if _runs_here(pid, birth, started):
            return True, f"{key} (pid {pid}, {data.get('state', '?')}, last heartbeat {data.get('last_heartbeat')})"
    if seen:
        return False, f"{seen} RQ worker record(s) of {hostname} in Redis, none of a process running here"
    return False, f"no live RQ worker of {hostname} in Redis (its heartbeat lapsed, or it never started)"


def probe_renewer(r, *, hostname: str,
                  started: Callable[[int], dt.datetime | None] | None = None) -> tuple[bool, str]:
    """(alive, message): this host's renewer looped within its leader-lock expiry."""
    from graphhook.core import keys

    started = started or process_start
    data = {k.decode(): v.decode() for k, v in r.hgetall(keys.renewer_alive(hostname)).items()}
    if not data.get("pid"):
        return False, f"no renewer loop of {hostname} recorded recently (stopped, stuck, or not started)"
    pid, at = int(data["pid"]), _parse(data.get("at"))
    if not _runs_here(pid, at, started):
        return False, f"the renewer loop recorded for {hostname} was pid {pid}, which no longer runs here"
    holder = r.get(keys.RENEWER_LOCK)
    role = "leader" if holder else "no leader yet"
    return True, f"renewer pid {pid} looped at {data.get('at')} ({role})"


def probe_web(url: str, *, timeout: float = 3.0) -> tuple[bool, str]:
    """(ready, message): GET ``url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 — loopback URL
            return True, f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url} answered {exc.code}"
    except OSError as exc:
        return False, f"{url} unreachable: {exc}"


# --- this host's processes -------------------------------------------------------------------

def _runs_here(pid: int, since: dt.datetime | None, started: Callable[[int], dt.datetime | None]) -> bool:
    """``pid`` is a process here that already ran at ``since`` (not a newer process reusing the pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    began = started(pid)
    return began is None or since is None or began <= since + START_SLACK


def process_start(pid: int) -> dt.datetime | None:
    """When ``pid`` started, from /proc (None where /proc is unavailable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, counted after the comm field
    seconds = boot + ticks / os.sysconf("SC_CLK_TCK")
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def process_command_lines(proc: Path = Path("/proc")) -> list[list[str]]:
    """argv of every process visible here except this one (in a container: the container's processes)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if argv:
            found.append(argv)
    return found


def detect(command_lines: Iterable[list[str]]) -> tuple[str | None, str | None]:
    """(kind, web URL) of the graphhook process among ``command_lines``; (None, None) if there is none."""
    for argv in command_lines:
        words = [Path(a).name for a in argv[:3]]
        if "gunicorn" in words:
            return "web", _readyz_url(argv)
        if "graphhook" in words or "graphhook.cli" in argv or "workers.pool" in argv:
            tail = argv[argv.index("workers.pool"):] if "workers.pool" in argv else argv
            for word in tail:
                if word in ("worker", "workers.pool"):
                    return "worker", None
                if word == "renewer":
                    return "renewer", None
    return None, None


def _readyz_url(argv: list[str]) -> str:
    """/readyz on the port of gunicorn's ``--bind``/``-b`` (8000 when absent)."""
    bind = None
    for i, arg in enumerate(argv):
        if arg in ("-b", "--bind") and i + 1 < len(argv):
            bind = argv[i + 1]
        elif arg.startswith("--bind="):
            bind = arg.split("=", 1)[1]
    port = bind.rsplit(":", 1)[1] if bind and ":" in bind and not bind.startswith("unix:") else "8000"
    return f"http://127.0.0.1:{port}/readyz"


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)

