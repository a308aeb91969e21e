"""Event photos 事件照片: check an uploaded image and re-encode it without metadata (pure; no I/O).

A phone photo carries EXIF metadata: the GPS position where it was taken, the device, sometimes the
owner's name. None of it is needed (the event has its point) and some of it is personal, so every
photo is decoded and written again without metadata, turned upright by its EXIF orientation, and
scaled down to at most :data:`MAX_SIDE` pixels on its long side. The type is decided by the bytes
(JPEG or PNG only), never by the file name or the client's media type, and images with more than
:data:`MAX_PIXELS` pixels are refused before they are decoded (decompression bombs).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from gisgov.errors import InvalidInput

MAX_SIDE = 2048
MAX_PIXELS = 40_000_000
SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}


class PhotoRejected(InvalidInput):
    """An upload that is not an acceptable photo (422; 413 for size limits)."""

    def __init__(self, message: str, status_code: int = 422):
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Photo:
    data: bytes  # the re-encoded image, no metadata
    media_type: str
    width: int
    height: int
    sha256: str

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.media_type]


def sniff(data: bytes) -> str | None:
    """The media type the bytes say (JPEG or PNG), else None."""
    for sig, media in SIGNATURES.items():
        if data.startswith(sig):
            return media
    return None


def clean_photo(data: bytes, name: str, *, max_bytes: int) -> Photo:
    """Check ``data`` (an uploaded file called ``name``) and return it re-encoded without metadata.

    Refused with a message naming the file and the rule: empty (``photo_empty``), larger than
    ``max_bytes`` (``photo_too_large``, 413), not JPEG/PNG by its bytes (``photo_type``), too many pixels
    (``photo_pixels``), not decodable (``photo_unreadable``)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise PhotoRejected(f"{name}: 文件为空 empty file (rule: photo_empty)")
    if len(data) > max_bytes:
        raise PhotoRejected(
            f"{name}: 照片过大 photo larger than {max_bytes / 1e6:.1f} MB "
            f"(GISGOV_EVENT_PHOTO_MAX_MB) (rule: photo_too_large)",
            status_code=413,
        )
    media = sniff(data)
    if media is None:
        raise PhotoRejected(
            f"{name}: 只接受 JPEG 或 PNG 照片 only JPEG or PNG photos are accepted "
            f"(the file's bytes are neither) (rule: photo_type)"
        )
    try:
        with Image.open(io.BytesIO(data)) as probe:
            w, h = probe.size
            if w * h > MAX_PIXELS:
                raise PhotoRejected(
                    f"{name}: 照片像素过多 {w}×{h} pixels, more than {MAX_PIXELS:,} (rule: photo_pixels)"
                )
            probe.verify()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            im.thumbnail((MAX_SIDE, MAX_SIDE))
            out = io.BytesIO()
            if media == "image/jpeg":
                im.convert("RGB").save(out, "JPEG", quality=85, optimize=True)  # no exif= : metadata dropped
            else:
                keep = "RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB"
                im.convert(keep).save(out, "PNG", optimize=True)  # no pnginfo: text chunks dropped
            width, height = im.size
    except PhotoRejected:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise PhotoRejected(
            f"{name}: 照片无法读取 the photo cannot be read ({type(exc).__name__}) (rule: photo_unreadable)"
        ) from None
    clean = out.getvalue()
    return Photo(clean, media, width, height, hashlib.sha256(clean).hexdigest())
