"""Event photos 事件照片 over HTTP: attach photos to an event, list them, fetch one.

* ``POST /api/events/{event_id}/photos`` (multipart ``file``): roles that report events (grid worker,
  community staff, street leader, admin), for an event in their area (404 otherwise). The photo is
  checked and re-encoded without metadata (:mod:`gisgov.events.photos`: JPEG/PNG by its bytes, at most
  ``GISGOV_EVENT_PHOTO_MAX_MB``, pixel limit, EXIF incl. GPS position dropped), kept 0600 under
  ``GISGOV_HOME/event-photos/``, at most ``GISGOV_EVENT_PHOTOS_MAX`` per event; the same photo twice is
  stored once. Audited (``event_photo``).
* ``GET /api/events/{event_id}/photos`` and ``GET /api/events/photos/{photo_id}``: like the event's
  detail, ``read_personal`` in the caller's area (a photo may show people); the image is sent with
  ``Cache-Control: private, no-store``.
"""

from __future__ import annotations

from pathlib import Path as FsPath

from fastapi import APIRouter, Depends, File, Path, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy import Connection, text

from gisgov.api.deps import DB, audit, current_principal, require
from gisgov.api.schemas.answer import KEEP_SHAPE
from gisgov.api.schemas.events import Photo
from gisgov.errors import Forbidden, InvalidInput, NotFound
from gisgov.events import machine, photos
from gisgov.security.roles import Perm, Principal

router = APIRouter(tags=["events 事件"])
EVENT_ID = Path(..., ge=1, le=2**63 - 1)
_CHUNK = 1 << 16


def photo_dir(request: Request) -> FsPath:
    return request.app.state.settings.home_abs / "event-photos"


def _event_visible(conn: Connection, event_id: int) -> None:
    """404 unless the event exists in the caller's area (row-level security decides)."""
    if conn.execute(text("SELECT 1 FROM event WHERE id = :i"), {"i": event_id}).first() is None:
        raise NotFound(f"未找到事件 event not found: {event_id}")


def _read_limited(upload: UploadFile, limit: int) -> bytes:
    data = bytearray()
    while chunk := upload.file.read(_CHUNK):
        data += chunk
        if len(data) > limit:
            break  # enough to say it is too large
    return bytes(data)


def _row(r) -> dict:
    return {
        "id": r.id,
        "event": r.event_id,
        "media_type": r.media_type,
        "bytes": r.bytes,
        "width": r.width,
        "height": r.height,
        "uploaded_at": r.uploaded_at.isoformat(),
        "url": f"/api/events/photos/{r.id}",
    }


@router.post(
    "/api/events/{event_id}/photos",
    status_code=201,
    response_model=Photo,
    **KEEP_SHAPE,
    summary="上传事件照片 Attach a photo to an event (JPEG/PNG; metadata incl. GPS removed)",
)
def add_photo(
    request: Request,
    event_id: int = EVENT_ID,
    file: UploadFile = File(..., description="JPEG or PNG photo"),
    conn: Connection = DB,
    p: Principal = Depends(current_principal),
) -> dict:
    settings = request.app.state.settings
    name = FsPath(file.filename or "photo").name[:120] or "photo"
    if not machine.can_report(p.role):
        raise Forbidden(
            f"无权限 not allowed for role {p.role.value} ({p.label}): only roles that report events may add photos"
        )
    _event_visible(conn, event_id)
    count = conn.execute(text("SELECT count(*) FROM event_photo WHERE event_id = :i"), {"i": event_id}).scalar()
    limit = int(settings.event_photo_max_mb * 1e6)
    try:
        photo = photos.clean_photo(_read_limited(file, limit), name, max_bytes=limit)
    except photos.PhotoRejected as exc:
        audit(
            request,
            "event_photo",
            p,
            object=f"event:{event_id}",
            result="failed",
            detail={"file": name, "error": str(exc)[:300]},
        )
        raise
    existing = conn.execute(
        text("SELECT * FROM event_photo WHERE event_id = :i AND sha256 = :h"), {"i": event_id, "h": photo.sha256}
    ).first()
    if existing is not None:
        return _row(existing) | {"duplicate": True}
    if count >= settings.event_photos_max:
        raise InvalidInput(
            f"事件照片已达上限 event {event_id} already has {count} photos, the most allowed "
            f"(GISGOV_EVENT_PHOTOS_MAX) (rule: photo_count)"
        )
    rel = f"{event_id}/{photo.sha256}.{photo.extension}"
    from gisgov.privatefiles import write_private

    target = photo_dir(request) / rel
    write_private(target, photo.data)
    target.parent.chmod(0o700)
    row = conn.execute(
        text("""
        INSERT INTO event_photo (event_id, uploaded_by, media_type, bytes, width, height, sha256, file)
        VALUES (:e, :u, :m, :b, :w, :h, :s, :f) RETURNING *"""),
        {
            "e": event_id,
            "u": p.user_id,
            "m": photo.media_type,
            "b": len(photo.data),
            "w": photo.width,
            "h": photo.height,
            "s": photo.sha256,
            "f": rel,
        },
    ).first()
    audit(
        request,
        "event_photo",
        p,
        object=f"event:{event_id}",
        conn=conn,
        detail={"photo": row.id, "bytes": len(photo.data), "media_type": photo.media_type},
    )
    return _row(row) | {"duplicate": False}


@router.get(
    "/api/events/{event_id}/photos",
    response_model=list[Photo],
    **KEEP_SHAPE,
    summary="事件照片列表 Photos of an event",
)
def list_photos(
    event_id: int = EVENT_ID, conn: Connection = DB, p: Principal = Depends(require(Perm.read_personal))
) -> list[dict]:
    _event_visible(conn, event_id)
    rows = conn.execute(text("SELECT * FROM event_photo WHERE event_id = :i ORDER BY id"), {"i": event_id}).all()
    return [_row(r) for r in rows]


@router.get(
    "/api/events/photos/{photo_id}",
    summary="事件照片 One photo (the image)",
    response_class=Response,
    responses={
        200: {
            "description": "照片 the image (JPEG or PNG, metadata removed)",
            "content": {
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
def get_photo(
    request: Request,
    photo_id: int = Path(..., ge=1, le=2**63 - 1),
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.read_personal)),
) -> Response:
    r = conn.execute(
        text("""SELECT ph.media_type, ph.file FROM event_photo ph JOIN event e ON e.id = ph.event_id
        WHERE ph.id = :i"""),
        {"i": photo_id},
    ).first()
    if r is None:
        raise NotFound(f"未找到照片 photo not found: {photo_id}")
    path = photo_dir(request) / r.file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"照片文件不存在 photo file missing: {photo_id}") from None
    return Response(data, media_type=r.media_type, headers={"Cache-Control": "private, no-store"})
