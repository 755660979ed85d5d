"""A faithful local Microsoft Graph (mail, subscriptions, notifications) and identity platform.

Imports neither ``receiver`` nor ``workers``. Entry point: :class:`emulator.server.Emulator`.
"""

from .server import Emulator

__all__ = ["Emulator"]
