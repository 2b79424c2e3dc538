"""POST /api/verify: is an uploaded video facecast output? The mark and the C2PA manifest.

The work is bounded at every step: the request guard refuses a body over
max_video_bytes before reading it (Content-Length) or while it streams; the
upload is spooled to disk, not held in memory; the frame size is checked from
the stream header before decoding, and at most verify_limits.max_frames frames
are decoded; one verification runs at a time (another gets 429).

The mark is looked for with the server's key and, when that is a private one,
with the public key too; the report says which matched ("key": "private" or
"public"), never the key.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import APIRouter, HTTPException, Request, UploadFile

from engines.provenance import verify_video

from .errors import VerifyBusyError
from .state import state_of

__all__ = ["router"]

router = APIRouter()


@router.post("/verify")
async def verify(request: Request, file: UploadFile) -> dict[str, Any]:
    state = state_of(request)
    if state.verify_lock.locked():
        raise VerifyBusyError("another video is being verified; send this one again in a moment")
    async with state.verify_lock:
        upload = file.file
        size = upload.seek(0, os.SEEK_END)
        if size == 0:
            raise HTTPException(400, "the uploaded video is empty")
        upload.seek(0)
        limits, mark = state.config.verify_limits, state.config.provenance.mark
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(None, verify_video, upload, limits, mark)
    return {"filename": (file.filename or "upload")[:200], "bytes": size, **report.to_dict()}
