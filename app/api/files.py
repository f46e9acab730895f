"""/v1/files: upload dispute evidence (PDF, PNG or JPEG, checked by content, at most 5 MB), retrieve it, download it.

    curl -u sk_test_...: $KASSA/v1/files -F purpose=dispute_evidence -F file=@receipt.pdf

Downloads come only as attachments, with ``X-Content-Type-Options: nosniff`` and ``Content-Security-Policy:
sandbox``, named ``<file id>.<type>`` (app/disputes/files.py).
"""
from flask import Response, current_app, g, jsonify, request

from app.api import bp
from app.api.auth import api_view
from app.api.errors import ApiError, invalid_param
from app.api.payments import request_params
from app.disputes import files
from app.disputes.models import FILE_PURPOSES
from app.extensions import db


def _not_found(file_id: str) -> ApiError:
    return ApiError(404, "invalid_request_error", "resource_missing", f"No such file: '{file_id}'.", "id")


@bp.post("/files")
@api_view(upload_max_bytes=files.FILE_MAX_BYTES)
def create_file():
    """Upload a file (``multipart/form-data``: ``purpose=dispute_evidence`` and ``file``)."""
    p = request_params()
    purpose = p.enum("purpose", FILE_PURPOSES, required=True)
    p.done()
    upload = request.files.get("file")
    if upload is None or len(request.files) != 1:
        raise invalid_param("file", "Send exactly one file, as the multipart field `file`.", "parameter_missing")
    try:
        row = files.store(db.session, g.scope, upload.read(files.FILE_MAX_BYTES + 1), purpose=purpose,
                          filename=upload.filename, directory=current_app.config.get("FILES_DIRECTORY"))
    except files.FileRefused as refused:
        raise invalid_param("file", refused.message, refused.code) from None
    body = files.file_object(row)
    db.session.commit()
    return jsonify(body)


@bp.get("/files/<file_id>")
@api_view
def retrieve_file(file_id: str):
    """A file's object (what it is, not its content)."""
    request_params(allowed=())
    row = files.get_file(db.session, g.scope, file_id)
    if row is None:
        raise _not_found(file_id)
    body = files.file_object(row)
    db.session.commit()
    return jsonify(body)


@bp.get("/files/<file_id>/contents")
@api_view
def download_file(file_id: str):
    """The file's content, as a download only."""
    request_params(allowed=())
    row = files.get_file(db.session, g.scope, file_id)
    if row is None:
        raise _not_found(file_id)
    try:
        return download(row)
    except files.FileUnavailable:
        raise ApiError(500, "api_error", "file_unavailable",
                       "This file cannot be served: its content is not what was stored.", "id") from None


def download(row) -> Response:
    """A stored file as a download (the API's, the dashboard's and the console's). FileUnavailable (logged)
    when its content is missing or not what was stored: never served then."""
    try:
        content = files.read_content(row, current_app.config.get("FILES_DIRECTORY"))
    except files.FileUnavailable:
        db.session.rollback()
        current_app.logger.exception("file %s cannot be served", row.id)
        raise
    db.session.commit()
    return Response(content, headers=files.download_headers(row))
