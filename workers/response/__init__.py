"""Incident response: find messages across mailboxes, act on them, and purge a campaign resumably."""
