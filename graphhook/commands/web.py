"""``graphhook web [--cert FILE --key FILE]``: development server for the receiver (production: gunicorn).

Graph posts only to https URLs, so a local trial serves HTTPS: ``--cert``/``--key`` take a PEM
certificate and key, such as the receiver certificate ``graphhook emulator`` issues with its CA.
"""

from __future__ import annotations

import argparse

from graphhook.core.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``graphhook web``."""
    p = sub.add_parser("web", help="development server for the receiver (production: gunicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--cert", help="serve HTTPS with this PEM certificate (graphhook emulator prints one)")
    p.add_argument("--key", help="the certificate's PEM private key")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve the receiver until Ctrl-C."""
    import ssl

    from graphhook.core.settings import Settings
    from receiver.app import create_app
    from receiver.metrics import serve_private

    if bool(args.cert) != bool(args.key):
        raise ConfigError("HTTPS needs both --cert FILE and --key FILE")
    context = None
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(args.cert, args.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load --cert {args.cert!r} / --key {args.key!r}: {exc}") from exc
    settings = Settings.from_env()
    settings.require("REDIS_URL")
    app = create_app(settings)
    # As under gunicorn: metrics on the private listener (one process: the app's own registry, Redis's included).
    if serve_private(settings, app.config["METRICS"].registry):
        print(f"metrics on http://{settings.metrics_bind}:{settings.metrics_port}/metrics")
    print(f"receiver on {'https' if context else 'http'}://{args.host}:{args.port}", flush=True)
    app.run(host=args.host, port=args.port, ssl_context=context)
    return 0
