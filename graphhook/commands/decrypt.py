"""``graphhook decrypt --key FILE [--password P] FILE``: decrypt a rich notification for debugging.

FILE (``-`` for stdin) holds an ``encryptedContent`` object, a whole notification,
or a ``{"value": [...]}`` collection. The key is a PEM or PKCS#12 file; the
signature is checked before anything is decrypted (graph-protocol.md §4).

The key's password comes from ``GRAPHHOOK_DECRYPT_PASSWORD``, else from a prompt
when a terminal is attached. ``--password`` still works but warns: anything on
the command line is visible to every user of the machine (``ps``,
``/proc/PID/cmdline``) and lands in shell history.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from graphhook.core.errors import ConfigError, DecryptionError

PASSWORD_ENV = "GRAPHHOOK_DECRYPT_PASSWORD"  # read by this command only; not a service setting
ARGV_WARNING = (f"warning: --password is visible to other users of this machine (ps, /proc) and in shell history; "
                f"set {PASSWORD_ENV} or let graphhook decrypt prompt for it instead")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``decrypt`` sub-command."""
    p = sub.add_parser("decrypt", help="decrypt a rich notification's encryptedContent; prints the resource JSON")
    p.add_argument("--key", required=True, help="private key: PEM (key, optionally with certificate) or PKCS#12")
    p.add_argument("--password", default=None,
                   help=f"password of the key file (PKCS#12 or encrypted PEM). Avoid: other users can read it from "
                        f"the process list. Prefer the environment variable {PASSWORD_ENV}, or the prompt shown "
                        f"on a terminal when the key needs a password")
    p.add_argument("file", help="JSON: encryptedContent, a notification, or a collection ('-' reads stdin)")
    p.add_argument("--json", action="store_true", help="JSON on stdout (always: the resource is JSON)")
    p.set_defaults(func=run)


def _contents(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, dict) and "dataKey" in document:
        return [document]
    if isinstance(document, dict) and isinstance(document.get("encryptedContent"), dict):
        return [document["encryptedContent"]]
    if isinstance(document, dict) and isinstance(document.get("value"), list):
        found = [item["encryptedContent"] for item in document["value"]
                 if isinstance(item, dict) and isinstance(item.get("encryptedContent"), dict)]
        if found:
            return found
    raise DecryptionError("no encryptedContent found: expected an encryptedContent object, a notification or a collection")


def _on_terminal() -> bool:
    return os.isatty(0) or os.isatty(2)


def _load_key(args: argparse.Namespace, load_key_file: Any) -> Any:
    """The key, with its password from --password (warned), the environment, or a prompt on a terminal."""
    password = args.password
    if password is not None:
        print(ARGV_WARNING, file=sys.stderr)
    else:
        password = os.environ.get(PASSWORD_ENV) or None
    try:
        return load_key_file(args.key, password=password)
    except ConfigError:
        if password is not None or not _on_terminal():
            raise
    # The key is encrypted (or unreadable) and nobody gave a password: ask, without echo.
    return load_key_file(args.key, password=getpass.getpass(f"password of {args.key}: ") or None)


def run(args: argparse.Namespace) -> int:
    """Print each decrypted resource as JSON; a bad signature or wrong key exits 1 with the reason."""
    from graphhook.core.richnotify import decrypt_content, load_key_file

    key = _load_key(args, load_key_file)
    try:
        text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    except OSError as exc:
        raise DecryptionError(f"cannot read {args.file!r}: {exc.strerror}") from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise DecryptionError(f"{args.file!r} is not JSON: {exc}") from exc
    for content in _contents(document):
        # A single --key decrypts whatever certificate id the content names: the operator chose the key.
        resource = decrypt_content(content, key)
        print(json.dumps(resource, indent=2, ensure_ascii=False))
    return 0
