"""``graphhook check``: the checklist of everything a deployment needs, each failure with its fix."""
