"""Helpers for the hardening and fuzz tests: real SDP offers, face images, raw requests.

Everything here talks to a real `facecast serve` on loopback, as an attacker or a
careless client would.
"""

from __future__ import annotations

import asyncio
import io
import re
import socket
import time
from urllib.parse import urlsplit

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection
from PIL import Image, ImageEnhance

from engines.paths import default_portrait_path
from tests.live import LiveServer

__all__ = [
    "offer_sdp",
    "without_candidates",
    "with_candidates",
    "face_png",
    "raw_request",
    "server_answers",
    "log_has_traceback",
]


async def _offer(audio: bool) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()  # the client walks away: nobody will ever answer ICE checks
    return sdp


def offer_sdp(audio: bool = True) -> str:
    """A real aiortc offer (recvonly video and audio) whose peer is already gone."""
    return asyncio.run(_offer(audio))


def without_candidates(sdp: str) -> str:
    """The offer as a client would send it before gathering: no candidates at all."""
    lines = [line for line in sdp.split("\r\n") if not line.startswith("a=candidate:")]
    return "\r\n".join(line for line in lines if line != "a=end-of-candidates")


def with_candidates(sdp: str, count: int) -> str:
    """The offer with `count` made-up host candidates in its first section."""
    fake = "\r\n".join(
        f"a=candidate:{i} 1 udp 2130706431 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256} "
        f"{10000 + i % 50000} typ host"
        for i in range(count)
    )
    return re.sub(r"(a=mid:0\r\n)", lambda m: m.group(1) + fake + "\r\n", sdp, count=1)


def face_png(variant: int) -> bytes:
    """The shipped portrait, varied (mirror, brightness, crop) so each variant is a new upload."""
    image = Image.open(default_portrait_path()).convert("RGB")
    if variant % 2:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Brightness(image).enhance(1.0 + 0.04 * variant)
    width, height = image.size
    image = image.crop((variant * 3, variant * 3, width - variant * 3, height))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def raw_request(server: LiveServer, head: str, body: bytes = b"", timeout_s: float = 10.0) -> str:
    """Send a request by hand (headers that lie about the body, partial bodies); the reply."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body)
        reply = b""
        deadline = time.monotonic() + timeout_s
        while b"\r\n\r\n" not in reply and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply.decode("latin-1")


def server_answers(server: LiveServer, headers: dict[str, str] | None = None) -> bool:
    response = httpx.get(server.url + "/api/health", headers=headers or {}, timeout=10)
    return response.status_code == 200


def log_has_traceback(server: LiveServer) -> bool:
    text = server.log_path.read_text(errors="replace")
    return "Traceback (most recent call last)" in text
