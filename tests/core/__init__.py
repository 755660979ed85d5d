"""Tests of graphhook.core: settings, logs, rich-notification crypto."""
