"""The web process: validation handshake, notification and lifecycle intake, health and metrics.

Production: ``gunicorn "receiver.app:create_app()"``. Never imports ``workers``.
"""
