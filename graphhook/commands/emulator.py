"""``graphhook emulator [--host H] [--port P]``: run the Graph emulator over HTTPS."""

from __future__ import annotations

import argparse
import json
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
    p.add_argument("--json", action="store_true", help="print the URL, CA path and environment as one JSON line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emulator import Emulator
    from emulator.seed import seed

    emu = Emulator(args.workdir, host=args.host, port=args.port,
                   client_id=args.client_id, client_secret=args.client_secret, tenant_id=args.tenant_id)
    emu.start()
    if not args.no_seed:
        seed(emu)
    if args.json:
        print(json.dumps({"url": emu.url, "ca": str(emu.ca_path), "environment": emu.environment()}))
    else:
        print(f"Graph emulator listening on {emu.url}")
        print(f"CA certificate: {emu.ca_path}")
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
