"""Storage for content-addressed image files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.files.storage import FileSystemStorage

# Every stored file gets this modification time (2000-01-01 UTC): a file's time would tell
# which image of a pair was rendered first, and so which model made it.
STORED_MTIME = 946_684_800


class ContentAddressedFileSystemStorage(FileSystemStorage):
    """Local storage that writes each file under a temporary name and renames it into place.

    A worker killed mid-write leaves a temporary file, never a truncated file under the final
    name, so "the file exists" always means "the file is complete". Every file has the same
    modification time (STORED_MTIME), whichever model made it and whenever. Names are content
    hashes: a name that exists already holds the same bytes, so it is reused, never suffixed.
    """

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return name

    def _save(self, name: str, content) -> str:
        full_path = Path(self.path(name))
        full_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=full_path.parent, prefix=".partial-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                for chunk in content.chunks():
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, self.file_permissions_mode or 0o644)
            os.utime(temporary, (STORED_MTIME, STORED_MTIME))
            os.replace(temporary, full_path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return name
