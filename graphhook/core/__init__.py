"""The shared core of receiver and workers: settings, errors, Redis keys and connection, logs, the notification model,
rich-notification crypto and the metrics both sides count. Imports neither ``receiver`` nor ``workers``."""
