"""``graphhook emulator [--host H] [--port P]``: run the Graph emulator over HTTPS, ready for a local trial.

Besides the emulator's own URL and CA, it issues a certificate for the receiver (signed by the
emulator's CA, which the emulator trusts when it delivers notifications) and writes, in its work
directory, a starter ``graphhook.yaml`` (the seeded mailboxes) and ``graphhook.env``: every variable
the other processes need, so that ``emulator + web + worker + renewer`` by hand is
``source DIR/graphhook.env`` in each terminal (docs/development.md#trying-it-by-hand).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PUBLIC_URL = "https://127.0.0.1:8000"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``graphhook emulator``."""
    p = sub.add_parser("emulator", help="run the Graph emulator over HTTPS")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--workdir", default=None, help="where the CA, certificates, graphhook.env and graphhook.yaml go")
    p.add_argument("--tenant-id", default=None)
    p.add_argument("--client-id", default=None)
    p.add_argument("--client-secret", default=None)
    p.add_argument("--no-seed", action="store_true", help="start with no mailboxes")
    p.add_argument("--latency-ms", type=float, default=0.0, metavar="N",
                   help="add N ms to every Graph call, as real Graph takes 100-300 ms (a $batch takes it once)")
    p.add_argument("--redis-url", default=None,
                   help=f"REDIS_URL written to graphhook.env (default: $REDIS_URL, else {DEFAULT_REDIS_URL})")
    p.add_argument("--public-url", default=DEFAULT_PUBLIC_URL,
                   help=f"PUBLIC_URL written to graphhook.env: where 'graphhook web' listens (default "
                        f"{DEFAULT_PUBLIC_URL})")
    p.add_argument("--json", action="store_true", help="print the URL, CA path and environment as one JSON line")
    p.set_defaults(func=run)


def trial_files(workdir: Path, environment: dict[str, str], mailboxes: list[str]) -> dict[str, str]:
    """Write ``graphhook.yaml`` (unless present) and ``graphhook.env``; return what the env file exports."""
    config = workdir / "graphhook.yaml"
    if not config.exists():
        listed = "".join(f"  - {box}\n" for box in mailboxes)
        config.write_text("# Written by 'graphhook emulator': the seeded mailboxes, no rules (every new message is\n"
                          "# still recorded in Redis, graphhook:events). Rules: docs/configuration.md.\n"
                          f"mailboxes:{' []' if not mailboxes else ''}\n{listed}")
    exports = {**environment, "GRAPHHOOK_CONFIG": os.environ.get("GRAPHHOOK_CONFIG") or str(config)}
    lines = [f"export {name}={shlex.quote(value)}" for name, value in exports.items()]
    env_file = workdir / "graphhook.env"
    env_file.write_text("# Written by 'graphhook emulator'; source it in each terminal: . " + str(env_file) + "\n"
                        + "\n".join(lines) + "\n")
    env_file.chmod(0o600)  # it holds the emulator's (throw-away) client secret
    return exports


def run(args: argparse.Namespace) -> int:
    """Start the emulator, print how to reach it, serve until SIGTERM or Ctrl-C."""
    from emulator import Emulator
    from emulator.seed import MAILBOXES, seed
    from graphhook.core.errors import ConfigError

    if not 0 <= args.latency_ms <= 60_000:
        raise ConfigError(f"--latency-ms must be between 0 and 60000, got {args.latency_ms!r}")
    emu = Emulator(args.workdir, host=args.host, port=args.port, latency=args.latency_ms / 1000,
                   client_id=args.client_id, client_secret=args.client_secret, tenant_id=args.tenant_id)
    emu.start()
    if not args.no_seed:
        seed(emu)
    receiver = emu.ca.issue("receiver")
    redis_url = args.redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    environment = {**emu.environment(), "REDIS_URL": redis_url, "PUBLIC_URL": args.public_url.rstrip("/")}
    exports = trial_files(Path(emu.workdir), environment, [] if args.no_seed else [m for m, _ in MAILBOXES])
    env_file = Path(emu.workdir) / "graphhook.env"
    if args.json:
        print(json.dumps({"url": emu.url, "ca": str(emu.ca_path), "environment": exports, "envFile": str(env_file),
                          "receiverCert": str(receiver.cert_path), "receiverKey": str(receiver.key_path)}))
    else:
        port = args.public_url.rstrip("/").rsplit(":", 1)[-1] if args.public_url.count(":") == 2 else "443"
        print(f"Graph emulator listening on {emu.url}")
        print(f"CA certificate: {emu.ca_path}")
        if emu.latency:
            print(f"Graph latency: {args.latency_ms:g} ms per call")
        print(f"Receiver certificate (signed by that CA): {receiver.cert_path}, key {receiver.key_path}")
        print("Environment for graphhook (all of it is in " + str(env_file) + "):")
        for name, value in exports.items():
            print(f"  export {name}={shlex.quote(value)}")
        print(f"\nREDIS_URL needs a Redis there (e.g. redis-server --port {redis_url.rsplit(':', 1)[-1].split('/')[0]} "
              "--save ''), or run graphhook emulator --redis-url URL.")
        print(f"Then, each in its own terminal, after: . {env_file}")
        print(f"  graphhook web --port {port} --cert {receiver.cert_path} --key {receiver.key_path}")
        print("  graphhook worker")
        print("  graphhook renewer")
        print("and send a message: graphhook mail send --mailbox bob@contoso.com --to alice@contoso.com "
              "--subject hello")
    sys.stdout.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    emu.stop()
    return 0
