"""One module per ``graphhook`` sub-command; each defines ``register(subparsers)``.

To add a command, add a module here and its name to ``COMMANDS``.
"""

COMMANDS = (
    "demo",
    "emulator",
    "web",
    "worker",
    "subscriptions",
    "renewer",
    "resync",
    "decrypt",
    "check",
    "webhooks",
    "rules",
    "mail",
    "purge",
    "probe",
)
