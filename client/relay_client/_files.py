"""Files given to ``send``: paths (streamed from disk) or ``(name, bytes_or_fileobj, content_type)``.

A ``FileSpec`` is opened afresh for every attempt, so a retry sends the whole file again from its
first byte, and a path is never read into memory: httpx reads it in 64 KiB pieces while sending.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

FileArg = str | os.PathLike[str] | tuple[str, bytes | IO[bytes], str | None] | tuple[str, bytes | IO[bytes]]
"""A path, or ``(name, bytes or binary file object, content type)``."""

Progress = Callable[[int], None]
"""Called with the number of bytes just read for sending (a progress bar's ``update``)."""


@dataclass(frozen=True)
class FileSpec:
    """One file to send: its name, content type and where its bytes are."""

    name: str
    content_type: str
    source: Path | bytes | IO[bytes]

    def size(self) -> int:
        """Its length in bytes, without reading it."""
        if isinstance(self.source, Path):
            return self.source.stat().st_size
        if isinstance(self.source, bytes):
            return len(self.source)
        here = self.source.tell()
        end = self.source.seek(0, os.SEEK_END)
        self.source.seek(here)
        return end

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """A binary reader at the first byte; closed afterwards if this opened it."""
        if isinstance(self.source, Path):
            with self.source.open("rb") as fh:
                yield fh
        elif isinstance(self.source, bytes):
            import io

            yield io.BytesIO(self.source)
        else:
            self.source.seek(0)
            yield self.source


def file_specs(files: Sequence[FileArg] | None) -> list[FileSpec]:
    """Normalise ``send``'s ``files`` argument; a missing path fails here, before anything is sent."""
    specs = []
    for item in files or ():
        if isinstance(item, tuple):
            name, data, *rest = item
            ctype = rest[0] if rest and rest[0] else _guess(name)
            if not isinstance(data, bytes) and not hasattr(data, "read"):
                raise TypeError(f"file {name!r}: expected bytes or a binary file object, got {type(data).__name__}")
            specs.append(FileSpec(name, ctype, data))
        else:
            path = Path(item).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            specs.append(FileSpec(path.name, _guess(path.name), path))
    return specs


def _guess(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class CountingReader:
    """A binary reader that reports every read to ``progress`` (the upload bar of ``relay-send``)."""

    def __init__(self, raw: IO[bytes], progress: Progress) -> None:
        self._raw, self._progress = raw, progress

    def read(self, n: int = -1) -> bytes:
        """Read and report."""
        data = self._raw.read(n)
        self._progress(len(data))
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Delegate (httpx rewinds before sending and seeks to the end to learn the length)."""
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        """Delegate."""
        return self._raw.tell()


@contextmanager
def multipart_files(specs: Sequence[FileSpec], progress: Progress | None = None, field: str | None = None
                    ) -> Iterator[list[tuple[str, tuple[str, Any, str]]]]:
    """httpx's ``files=`` list, opened: parts ``files[0]``, ``files[1]``, … (as the relay and Discord
    name them), or every part named ``field`` (``file`` for a transcription)."""
    with ExitStack() as stack:
        parts = []
        for n, spec in enumerate(specs):
            fh: Any = stack.enter_context(spec.open())
            if progress is not None:
                fh = CountingReader(fh, progress)
            parts.append((field or f"files[{n}]", (spec.name, fh, spec.content_type)))
        yield parts


