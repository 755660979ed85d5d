"""The ``graphhook`` command: entry points that compose receiver, workers and emulator."""
