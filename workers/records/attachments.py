"""Attachment bytes without holding them in memory: hashed as they arrive, spooled to disk past a threshold.

Bytes reach us two ways, and both go through a :class:`Sink`:

- inline, as ``contentBytes`` in the message fetched with ``$expand=attachments``.
  When the reply is large, :func:`read_json` streams it and diverts every long
  ``contentBytes`` string into a sink (base64-decoded on the fly), so a 100 MB
  attachment never sits in memory as a 133 MB JSON string;
- through ``…/attachments/{id}/$value`` (or ``…/messages/{id}/$value`` for raw
  MIME) as a stream, when Graph left the bytes out of the message
  (https://learn.microsoft.com/graph/api/attachment-get#example-6-get-the-raw-contents-of-a-file-attachment-on-a-message).

Past ``max_bytes`` nothing more is kept (the SHA-256 of what was streamed anyway
is still reported, and ``truncated`` says so).
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import tempfile
from typing import IO, Any, Iterable

KEEP_DIR_MODE = 0o700  # GRAPHHOOK_ATTACHMENT_DIR, when graphhook creates it
KEEP_FILE_MODE = 0o600  # each kept attachment: readable by the worker's user only
CHUNK = 256 * 1024  # bytes read from the socket at a time
INLINE_JSON = 1024 * 1024  # bytes of JSON parsed the plain way; larger replies are streamed
DIVERT_AFTER = 64 * 1024  # characters of a contentBytes string before it is diverted into a sink
SPOOL_MARK = "graphhook-spool:"  # what a diverted string is replaced with (base64 never contains ':')
_MARKS = itertools.count()  # markers are unique in the process, so several replies can share one sinks dict
_CONTENT_KEY = re.compile(rb'"contentBytes"\s*:\s*"$')
_SPECIAL = re.compile(rb'["\\]')
_UNICODE_ESCAPE = re.compile(rb"\\u([0-9a-fA-F]{4})")
_ESCAPES = {b"/": b"/", b"\\": b"\\", b'"': b'"', b"n": b"", b"r": b"", b"t": b"", b"b": b"", b"f": b""}


class Sink:
    """Counts, hashes and (up to ``max_bytes``) keeps bytes, in memory up to ``spool_bytes`` then on disk."""

    def __init__(self, *, max_bytes: int, spool_bytes: int, tmp_dir: str | None = None) -> None:
        self.max_bytes, self.size, self.truncated = max_bytes, 0, False
        self._hash = hashlib.sha256()
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=spool_bytes, dir=tmp_dir)

    def write(self, data: bytes) -> None:
        """Add bytes; past ``max_bytes`` they are hashed and counted but not kept."""
        if not data:
            return
        self._hash.update(data)
        room = self.max_bytes - self.size
        self.size += len(data)
        if room > 0:
            self._file.write(data[:room])
        if self.size > self.max_bytes:
            self.truncated = True

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of everything written."""
        return self._hash.hexdigest()

    @property
    def spilled(self) -> bool:
        """Whether the kept bytes went to a temporary file."""
        return bool(getattr(self._file, "_rolled", False))

    def read(self) -> bytes:
        """The kept bytes (small attachments; large ones should use :meth:`keep`)."""
        self._file.seek(0)
        return self._file.read()

    def keep(self, directory: str) -> str | None:
        """Store the kept bytes as ``directory/<sha256>`` (content-addressed); None when truncated."""
        if self.truncated:
            return None
        # Attachments are a stranger's files and often someone's private mail: only the worker's
        # user may read them. The directory is created 0700 and each file 0600 (mkstemp's mode),
        # whatever the umask says; a file kept by an older version is tightened when seen again.
        os.makedirs(directory, mode=KEEP_DIR_MODE, exist_ok=True)
        path = os.path.join(directory, self.sha256)
        if os.path.exists(path):
            os.chmod(path, KEEP_FILE_MODE)
            return path
        fd, partial = tempfile.mkstemp(prefix=f"{self.sha256}.", suffix=".part", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                self._file.seek(0)
                shutil.copyfileobj(self._file, out, CHUNK)
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        return path

    def close(self) -> None:
        """Drop the temporary file."""
        self._file.close()


class _Base64Writer:
    """Decodes a base64 stream arriving in arbitrary pieces into a sink."""

    def __init__(self, sink: Sink) -> None:
        self.sink, self._rest = sink, b""

    def write(self, data: bytes) -> None:
        data = self._rest + data
        cut = len(data) - len(data) % 4
        self._rest = data[cut:]
        if cut:
            self.sink.write(binascii.a2b_base64(data[:cut]))

    def close(self) -> None:
        if self._rest.strip(b"="):
            self.sink.write(binascii.a2b_base64(self._rest + b"=" * (-len(self._rest) % 4)))
        self._rest = b""


def read_json(chunks: Iterable[bytes], new_sink: Any) -> tuple[Any, dict[str, Sink]]:
    """Parse a JSON reply; long ``contentBytes`` strings go to sinks from ``new_sink()``.

    Returns the document, in which each diverted string reads ``graphhook-spool:<n>``,
    and the sinks by that marker. Small replies are parsed with :func:`json.loads`.
    """
    it = iter(chunks)
    head = bytearray()
    for chunk in it:
        head += chunk
        if len(head) > INLINE_JSON:
            break
    else:
        return json.loads(bytes(head)), {}
    return _Diverter(new_sink).run(bytes(head), it)


class _Diverter:
    """A scanner that copies JSON structure through and diverts long contentBytes strings."""

    def __init__(self, new_sink: Any) -> None:
        self.new_sink = new_sink
        self.out = bytearray()
        self.sinks: dict[str, Sink] = {}
        self.in_string = False
        self.start = 0  # index in ``out`` where the current string's content starts
        self.writer: _Base64Writer | None = None

    def run(self, head: bytes, rest: Iterable[bytes]) -> tuple[Any, dict[str, Sink]]:
        carry = self.feed(head)
        for chunk in rest:
            carry = self.feed(carry + chunk)
        if carry:
            raise ValueError("JSON reply ended inside an escape sequence")
        return json.loads(bytes(self.out)), self.sinks

    def feed(self, data: bytes) -> bytes:
        """Consume ``data``; return bytes that must wait for the next chunk (a split escape)."""
        pos, end = 0, len(data)
        while pos < end:
            if not self.in_string:
                quote = data.find(b'"', pos)
                if quote < 0:
                    self.out += data[pos:]
                    return b""
                self.out += data[pos:quote + 1]
                pos, self.in_string, self.start = quote + 1, True, len(self.out)
                continue
            match = _SPECIAL.search(data, pos)
            stop = match.start() if match else end
            if self.writer is not None:
                self.writer.write(data[pos:stop])
            else:
                self.out += data[pos:stop]
                if len(self.out) - self.start > DIVERT_AFTER and _CONTENT_KEY.search(self.out, max(0, self.start - 40), self.start):
                    self._divert()
            if match is None:
                return b""
            pos = stop
            if data[pos:pos + 1] == b'"':
                self._end_string()
                pos += 1
                continue
            # a backslash escape: \x or \uXXXX; wait for more data if it is split
            need = 6 if data[pos + 1:pos + 2] == b"u" else 2
            if pos + need > end:
                return data[pos:]
            escape = data[pos:pos + need]
            if self.writer is not None:
                self.writer.write(bytes([int(escape[2:], 16)]) if need == 6 else _ESCAPES.get(escape[1:], b""))
            else:
                self.out += escape
            pos += need
        return b""

    def _divert(self) -> None:
        sink = self.new_sink()
        marker = f"{SPOOL_MARK}{next(_MARKS)}"
        self.sinks[marker] = sink
        self.writer = _Base64Writer(sink)
        # What was copied so far kept its escapes verbatim (``\/``, ``\u002B``): decode them now.
        prefix = _UNICODE_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), bytes(self.out[self.start:]))
        self.writer.write(prefix.replace(b"\\/", b"/"))
        del self.out[self.start:]
        self.out += marker.encode()

    def _end_string(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.out += b'"'
        self.in_string = False
