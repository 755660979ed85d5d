"""User-written regexes of rule conditions: compiled with RE2 (linear time), matched on bounded text.

Every text a condition matches was written by whoever sent the mail. Python's ``re`` backtracks,
so a pattern as plain as ``(storage|password).*(limit|expire)`` takes quadratic time on a long
subject (4.9 s on 40 KB), and a nested quantifier takes exponential time. RE2
(https://github.com/google/re2/wiki/WhyRE2) runs in time linear in the text for every pattern
it accepts, so a rule's cost depends on the input's length only, and that length is bounded
here too (docs/configuration.md#conditions):

- ``FIELD_CHARS``: the first 8 KiB characters of a subject, display name, header value or URL;
- ``BODY_CHARS``: the first 1 MiB characters of the text or HTML body.

Text past a bound is not seen by regex conditions (the record itself keeps it whole). RE2 refuses
what it cannot run in linear time (backreferences, look-around): such a pattern is a
configuration error that quotes it, at load time, never a slow job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import re2

from graphhook.core.errors import ConfigError

FIELD_CHARS = 8 * 1024  # subject, display name, header value, URL: no reader sees further
BODY_CHARS = 1024 * 1024  # body text and raw HTML (SpamAssassin scans 50 KB of a text part by default)
ENGINE = "re2"
# Case-insensitive and multi-line unless the pattern says otherwise with (?-i) / (?-m).
_DEFAULT_FLAGS = "(?im)"


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would print the pattern on stderr; the ConfigError says it once
    return options


@dataclass(frozen=True)
class Pattern:
    """A compiled RE2 regex and the number of characters of text it is given."""

    source: str
    limit: int
    regex: Any = field(repr=False, compare=False)
    engine: str = ENGINE

    def search(self, text: str) -> bool:
        """Whether the pattern occurs in the first ``limit`` characters of ``text``."""
        # UTF-8 bytes: RE2 matches them directly; 'replace' keeps lone surrogates from raising.
        data = text[: self.limit].encode("utf-8", "replace")
        return self.regex.search(data) is not None


def compile_pattern(value: Any, field_name: str, limit: int = FIELD_CHARS) -> Pattern:
    """Compile a rule's regex with RE2; raise ConfigError naming the field and quoting the pattern."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"field {field_name}: expected a regular expression string, got {value!r}")
    try:
        regex = re2.compile(_DEFAULT_FLAGS + value, _options())
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        reason = reason.replace(_DEFAULT_FLAGS, "", 1) if reason.endswith(_DEFAULT_FLAGS + value) else reason
        raise ConfigError(f"field {field_name}: invalid regular expression {value!r} for the RE2 engine "
                          f"(linear time; no backreferences or look-around): {reason}") from exc
    return Pattern(value, limit, regex)
