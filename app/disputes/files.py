"""Files merchants upload as dispute evidence: PDF, PNG or JPEG only, judged by their content (never by the
name or the type the browser claims), kept under a generated id with a SHA-256 checksum. No Flask.

* The type comes from the content's signature (magic bytes, the ``filetype`` library); a PDF must also
  open as one (``pypdf``: a readable structure, not encrypted), which gives its page count for the
  evidence limits. Anything else is refused.
* At most FILE_MAX_BYTES per file (Stripe's limit for dispute evidence).
* Stored in PostgreSQL (``files.content``, bytea) unless FILES_DIRECTORY is configured, then as
  ``<directory>/<merchant_id>/<file id>``; never under the name it was uploaded with, which is kept only as
  a label. The checksum is verified on every read: a file changed behind Kassa's back is not served.
* Served back only as a download (the views set ``Content-Disposition: attachment`` with ``<id>.<type>``,
  ``X-Content-Type-Options: nosniff`` and ``Content-Security-Policy: sandbox``: ``download_headers``).
"""
import hashlib
import io
import os
import re
import warnings
from pathlib import Path

import filetype
from pypdf import PdfReader
from sqlalchemy.orm import Session

from app import pan
from app.disputes.models import File
from app.ids import new_id
from app.scoping import Scope

# Stripe's ceiling for a dispute evidence file; also what one upload request may carry (app/api/files.py).
FILE_MAX_BYTES = 5 * 1024 * 1024
CONTENT_TYPES = {"pdf": "application/pdf", "png": "image/png", "jpg": "image/jpeg"}
LABEL_MAX = 100
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9 ._()\-]+")


class FileRefused(ValueError):
    """An upload Kassa does not take; ``code`` says why (file_empty, file_too_large, file_type_unsupported,
    file_invalid)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.message = message
        self.code = code


class FileUnavailable(RuntimeError):
    """A stored file that cannot be read back as stored (missing, or its checksum does not match)."""


def inspect_content(content: bytes) -> tuple[str, int]:
    """(type, pages) of an upload, or FileRefused: the type by its content, a PDF opened to count its pages."""
    if not content:
        raise FileRefused("The file is empty.", "file_empty")
    if len(content) > FILE_MAX_BYTES:
        raise FileRefused(f"The file is {len(content) / 1024 / 1024:.1f} MB; the most is "
                          f"{FILE_MAX_BYTES // 1024 // 1024} MB.", "file_too_large")
    kind = filetype.guess(content)
    extension = kind.extension if kind is not None else None
    if extension == "pdf":
        return "pdf", _pdf_pages(content)
    if extension in ("png", "jpg"):
        return extension, 1
    raise FileRefused("Only PDF, PNG and JPEG files can be used as evidence; this file's content is none of "
                      "them, whatever its name says.", "file_type_unsupported")


def _pdf_pages(content: bytes) -> int:
    """The page count of a PDF that opens as one; FileRefused for anything that only starts like a PDF."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a malformed PDF that pypdf would only warn about is refused too
            reader = PdfReader(io.BytesIO(content), strict=True)
            if reader.is_encrypted:
                raise FileRefused("The PDF is password-protected; card networks need to read it.", "file_invalid")
            pages = len(reader.pages)
    except FileRefused:
        raise
    except Exception:  # noqa: BLE001 - whatever the parser trips on, the file is not a PDF we can send
        raise FileRefused("The file starts like a PDF but is not a readable PDF document.", "file_invalid") from None
    if pages < 1:
        raise FileRefused("The PDF has no pages.", "file_invalid")
    return pages


def label(filename: str | None) -> str | None:
    """The uploaded name as a label for people only: its last path part, unusual characters replaced."""
    if not filename:
        return None
    base = re.split(r"[\\/]", filename)[-1]
    cleaned = _LABEL_UNSAFE.sub("_", base).strip(" .")[:LABEL_MAX]
    return cleaned or None


def store(session: Session, scope: Scope, content: bytes, *, purpose: str = "dispute_evidence",
          filename: str | None = None, directory: str | None = None) -> File:
    """Check an upload and keep it under a new id (FileRefused when it is not acceptable).

    With ``directory``, the content is written there before the row is committed: a rollback leaves an
    unreferenced file behind, never a row without its content.
    """
    file_type, pages = inspect_content(content)
    if filename and pan.find_card_number(filename) is not None:
        raise FileRefused(pan.refusal("the file's name", pan.find_card_number(filename)), "card_number_in_field")
    file_id = new_id("file")
    digest = hashlib.sha256(content).hexdigest()
    if directory:
        path = _path(directory, scope, file_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".part")
        with open(temporary, "xb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    row = File(merchant_id=scope.merchant_id, livemode=scope.livemode, id=file_id, purpose=purpose, type=file_type,
               size=len(content), pages=pages, sha256=digest, filename=label(filename),
               storage="directory" if directory else "database", content=None if directory else content)
    session.add(row)
    session.flush()
    return row


def _path(directory: str, scope: Scope, file_id: str) -> Path:
    # Both parts are Kassa's own ids (letters, digits, underscore): nothing a client wrote names the path.
    return Path(directory) / scope.merchant_id / file_id


def read_content(row: File, directory: str | None = None) -> bytes:
    """The file's content as stored, its checksum verified (FileUnavailable otherwise)."""
    if row.storage == "database":
        content = bytes(row.content or b"")
    else:
        if not directory:
            raise FileUnavailable(f"file {row.id} is kept in FILES_DIRECTORY, which is not configured")
        try:
            content = _path(directory, Scope(row.merchant_id, row.livemode), row.id).read_bytes()
        except OSError as error:
            raise FileUnavailable(f"file {row.id} cannot be read: {type(error).__name__}") from None
    if hashlib.sha256(content).hexdigest() != row.sha256:
        raise FileUnavailable(f"file {row.id} does not match its checksum")
    return content


def get_file(session: Session, scope: Scope, file_id: str) -> File | None:
    """The scope's file by id, or None (also for another merchant's or mode's)."""
    return scope.get(session, File, file_id) if isinstance(file_id, str) else None


def download_name(row: File) -> str:
    """The name a download gets: the id and the type, never what it was uploaded as."""
    return f"{row.id}.{row.type}"


def download_headers(row: File) -> dict[str, str]:
    """Headers of every download of a stored file (merchant API, dashboard, admin)."""
    return {
        "Content-Type": CONTENT_TYPES[row.type],
        "Content-Disposition": f'attachment; filename="{download_name(row)}"',
        "X-Content-Type-Options": "nosniff",
        # A browser that renders it anyway (a PDF viewer) runs it with no script, no origin, no forms.
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "private, no-store",
    }


def file_object(row: File) -> dict:
    """A file as the API shows it (Stripe's shape)."""
    from app.payments.serializers import unix

    return {"id": row.id, "object": "file", "livemode": row.livemode, "created": unix(row.created_at),
            "purpose": row.purpose, "type": row.type, "size": row.size, "filename": row.filename,
            "pages": row.pages}
