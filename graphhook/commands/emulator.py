"""``graphhook emulator [--host H] [--port P]``: run the Graph emulator over HTTPS."""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("emulator", help="run the Graph emulator over HTTPS")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--workdir", default=None, help="where the CA and certificates are written")
    p.add_argument("--tenant-id", default=None)
    p.add_argument("--client-id", default=None)
    p.add_argument("--client-secret", default=None)
    p.add_argument("--no-seed", action="store_true", help="start with no mailboxes")
    p.add_argument("--latency-ms", type=float, default=0.0, metavar="N",
                   help="add N ms to every Graph call, as real Graph takes 100-300 ms (a $batch takes it once)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emulator import Emulator
    from emulator.seed import seed
    from graphhook.core.errors import ConfigError

    if not 0 <= args.latency_ms <= 60_000:
        raise ConfigError(f"--latency-ms must be between 0 and 60000, got {args.latency_ms!r}")
    emu = Emulator(args.workdir, host=args.host, port=args.port, latency=args.latency_ms / 1000,
                   client_id=args.client_id, client_secret=args.client_secret, tenant_id=args.tenant_id)
    emu.start()
    if not args.no_seed:
        seed(emu)
    print(f"Graph emulator listening on {emu.url}")
    print(f"CA certificate: {emu.ca_path}")
    if emu.latency:
        print(f"Graph latency: {args.latency_ms:g} ms per call")
    print("Environment for graphhook:")
    for name, value in emu.environment().items():
        print(f"  export {name}={value}")
    sys.stdout.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    emu.stop()
    return 0
