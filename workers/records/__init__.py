"""From a Graph message to graphhook's email record: fetch, attachments, authentication results, URLs, rich payloads."""
