"""The web client in a real headless Chromium against a real `facecast serve`.

Debian's chromium (apt-get install chromium), driven by Playwright with
executable_path: no browser download. The page must connect by itself, show the
built-in portrait alive (decoded frames that look like la_velata.jpg), speak
typed text (playback_started reaches the page, frames keep coming), take the
fake microphone (a synthetic voiced wav) without an error, and interrupt.

The server runs with an API token and the page gets it as ?token=, so every
request of the client (fetch, <img>, WebSocket) is checked to carry it.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.live import run_server
from tests.speech import write_wav

if TYPE_CHECKING:
    from playwright.sync_api import Page

playwright_sync = pytest.importorskip(
    "playwright.sync_api",
    reason="the browser test needs the playwright package (pip install playwright)",
)

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
PORTRAIT = REPO / "engines" / "assets" / "la_velata.jpg"
SCREENSHOT_COPY = Path("/tmp/facecast_browser.png")
TOKEN = "browser-test-token"
SPEECH = (
    "Hello there. I am a painted face that talks in your browser, "
    "and I keep talking until somebody interrupts me."
)


# ---- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (no browser is downloaded)")
    return CHROMIUM


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `facecast serve` on a free loopback port, with an API token; stopped at the end."""
    data_dir = tmp_path_factory.mktemp("server")
    with run_server(data_dir, env={"FACECAST_API_TOKEN": TOKEN}) as server:
        yield server.url


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of a voiced, syllable-modulated tone: what the fake microphone plays (looped)."""
    rate = 48000
    t = np.arange(3 * rate) / rate
    pitch = 120 + 15 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    # Harmonics shaped like a vowel's formants, opened and closed at a syllable rate.
    voice = sum(np.sin(k * phase) / k * (1.5 if 5 <= k <= 7 else 1.0) for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) ** 0.5
    signal = 0.25 * voice * envelope / np.max(np.abs(voice))
    return write_wav(tmp_path_factory.mktemp("mic") / "mic.wav", signal.astype(np.float32), rate)


# ---- image checks -------------------------------------------------------------------


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def _portrait_match(frame: np.ndarray, portrait: np.ndarray) -> float:
    """Best normalised correlation of the frame against the portrait over crop scales.

    The server shows a square crop around the face, resampled to 512x512; its
    size in the portrait is unknown here, so the frame is shrunk to a range of
    sizes and slid over the portrait (both in grey, at a quarter resolution).
    """
    import cv2

    def grey(rgb: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2GRAY)

    small = 0.25
    target = cv2.resize(grey(portrait), None, fx=small, fy=small, interpolation=cv2.INTER_AREA)
    # The middle of the frame: the face, away from replicated edges and the badge.
    h, w = frame.shape[:2]
    centre = grey(frame[h // 6 : h - h // 6, w // 6 : w - w // 6])
    best = -1.0
    for side in range(200, 1000, 20):  # candidate crop side in portrait pixels
        size = int(side * small * 2 / 3)  # the centre is 2/3 of the crop
        if size < 16 or size > min(target.shape):
            continue
        template = cv2.resize(centre, (size, size), interpolation=cv2.INTER_AREA)
        score = float(cv2.matchTemplate(target, template, cv2.TM_CCOEFF_NORMED).max())
        best = max(best, score)
    return best


def _check_face(video_png: Path) -> dict[str, float]:
    frame = _load_rgb(video_png)
    portrait = _load_rgb(PORTRAIT)
    stats = {
        "mean": float(frame.mean()),
        "std": float(frame.std()),
        "colour_distance": float(np.abs(frame.mean((0, 1)) - portrait.mean((0, 1))).max()),
        "match": _portrait_match(frame, portrait),
    }
    assert stats["mean"] > 25 and stats["std"] > 20, f"the video looks black or blank: {stats}"
    # La Velata is warm (R > G > B); a decoding fault tends to go green or grey.
    r, g, b = frame.mean((0, 1))
    assert r > g > b, (
        f"the video's colours are not the portrait's: mean RGB {r:.0f},{g:.0f},{b:.0f}"
    )
    assert stats["colour_distance"] < 45, f"the video's mean colour is not the portrait's: {stats}"
    # The same crop of the same painting correlates at ~0.98; another image well below 0.7.
    assert stats["match"] > 0.7, f"the video does not look like the built-in portrait: {stats}"
    return stats


# ---- page helpers -------------------------------------------------------------------


def _frames(page: Page) -> int:
    return int(page.locator("#stats-frames").inner_text() or 0)


def _wait_frames(page: Page, above: int, timeout_s: float) -> int:
    page.wait_for_function(
        "n => Number(document.getElementById('stats-frames').textContent) > n",
        arg=above,
        timeout=timeout_s * 1000,
    )
    return _frames(page)


def _assert_no_error(page: Page, problems: list[str]) -> None:
    message = page.locator("#error")
    if message.is_visible() and message.get_attribute("data-kind") != "info":
        pytest.fail(f"the page shows an error: {page.locator('#error-text').inner_text()}")
    assert not problems, f"console errors / page exceptions: {problems}"


def _record_console_error(problems: list[str], kind: str, text: str) -> None:
    if kind == "error":
        problems.append(f"console: {text}")


def _set_range(page: Page, selector: str, value: float) -> None:
    """Moves a range input as a user's drag would: set the value, fire 'input'."""
    page.eval_on_selector(
        selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", value
    )


def _session_info(base_url: str, session_id: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base_url}/api/sessions/{session_id}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


# ---- the test -----------------------------------------------------------------------


def test_browser_client_end_to_end(
    chromium_path: Path, server_url: str, mic_wav: Path, tmp_path: Path
) -> None:
    args = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic_wav}",
        "--autoplay-policy=no-user-gesture-required",
        "--no-sandbox",
    ]
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium_path), args=args)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"exception: {exc}"))
            page.on("console", lambda msg: _record_console_error(problems, msg.type, msg.text))
            page.goto(f"{server_url}/?token={TOKEN}")
            session_id = _check_live_portrait(page, tmp_path)
            _assert_no_error(page, problems)
            _check_speech(page, tmp_path)
            _assert_no_error(page, problems)
            _check_microphone(page)
            _assert_no_error(page, problems)
            _check_controls(page, server_url, session_id)
            _check_error_message(page, problems)
            _check_interrupt(page)
            _check_reconnect(page, session_id)
            _assert_no_error(page, problems)
        finally:
            browser.close()


def _check_live_portrait(page: Page, tmp_path: Path) -> str:
    """The page connects by itself and the built-in portrait comes alive; returns the session id."""
    page.wait_for_function(
        "document.getElementById('stats-first-frame').textContent.endsWith('ms')", timeout=20_000
    )
    frames = _wait_frames(page, 10, timeout_s=15)
    assert page.locator("#conn-state").inner_text() == "connected"
    session_id = page.locator("#session-id").inner_text()
    assert len(session_id) > 4, f"no session id shown: {session_id!r}"
    assert page.locator("#portraits .thumb").count() >= 1, "no portrait thumbnails"
    assert page.locator("#portraits .thumb.selected").count() == 1
    # The thumbnails loaded: <img> cannot send headers, so their URLs carry the token.
    page.wait_for_function(
        "[...document.querySelectorAll('#portraits img')].every(i => i.complete && i.naturalWidth)",
        timeout=10_000,
    )
    video_png = tmp_path / "video.png"
    page.locator("#video").screenshot(path=str(video_png))
    face = _check_face(video_png)
    first = page.locator("#stats-first-frame").inner_text()
    print(f"first frame {first} after page load, {frames} frames decoded, {face}")
    return session_id


def _check_speech(page: Page, tmp_path: Path) -> None:
    """Typed text is spoken: playback_started reaches the page and frames keep coming."""
    page.fill("#speak-text", SPEECH)
    page.click("#speak-button")
    page.wait_for_selector("#speaking", state="visible", timeout=20_000)
    assert "playback_started" in page.locator("#events").inner_text()
    _wait_frames(page, _frames(page) + 15, timeout_s=10)
    page.wait_for_timeout(400)  # let the mouth move for the screenshot
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    SCREENSHOT_COPY.write_bytes((tmp_path / "page.png").read_bytes())


def _check_microphone(page: Page) -> None:
    """The fake microphone (playing mic_wav) is sent to the server, then turned off."""
    page.click("#mic")
    page.wait_for_selector("#mic[aria-pressed='true']", timeout=10_000)
    page.wait_for_function(
        """async () => {
            const report = await window.facecast.pc.getStats();
            let sent = 0;
            report.forEach(s => {
                if (s.type === 'outbound-rtp' && s.kind === 'audio') sent = s.packetsSent;
            });
            return sent > 20;
        }""",
        timeout=10_000,
        polling=250,
    )
    page.click("#mic")
    page.wait_for_selector("#mic[aria-pressed='false']", timeout=5_000)


def _check_controls(page: Page, server_url: str, session_id: str) -> None:
    """Emotion, head distance and a held gaze reach the session; free gaze sends null."""
    page.click("#emotions [data-emotion='happy']")
    _set_range(page, "#head-distance", 1.2)
    page.uncheck("#free-gaze")
    _set_range(page, "#gaze-yaw", 0.3)
    wanted = {"emotion": "happy", "head_distance": 1.2, "gaze_yaw": 0.3}
    _wait_for_controls(server_url, session_id, wanted)
    page.check("#free-gaze")
    _wait_for_controls(server_url, session_id, {"gaze_yaw": None, "gaze_pitch": None})


def _wait_for_controls(base_url: str, session_id: str, wanted: dict[str, Any]) -> None:
    """Polls the session until its controls hold `wanted` (the page sends them one at a time)."""
    deadline = time.monotonic() + 5
    while True:
        controls = _session_info(base_url, session_id)["controls"]
        close = {k: pytest.approx(v) if isinstance(v, float) else v for k, v in wanted.items()}
        if all(controls[k] == v for k, v in close.items()):
            return
        assert time.monotonic() < deadline, f"controls {controls} never became {wanted}"
        time.sleep(0.1)


def _check_error_message(page: Page, problems: list[str]) -> None:
    """An API error (a text file as portrait) shows the server's detail, and can be dismissed."""
    text_file = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"}
    page.set_input_files("#portrait-file", files=[text_file])
    page.wait_for_selector("#error", state="visible", timeout=5_000)
    text = page.locator("#error-text").inner_text()
    assert page.locator("#error").get_attribute("data-kind") == "error"
    assert len(text) > 15 and not text[0].isdigit(), f"not the server's detail: {text!r}"
    page.click("#error-close")
    page.wait_for_selector("#error", state="hidden", timeout=2_000)
    # Chromium logs every 4xx response as a console error; that one was expected.
    problems[:] = [p for p in problems if "Failed to load resource" not in p]


def _check_interrupt(page: Page) -> None:
    """Interrupt ends the utterance early; the face goes on (idle)."""
    page.click("#interrupt")
    page.wait_for_function(
        "document.getElementById('events').textContent.includes('(interrupted)')", timeout=10_000
    )
    page.wait_for_selector("#speaking", state="hidden", timeout=5_000)
    _wait_frames(page, _frames(page) + 10, timeout_s=10)


def _check_reconnect(page: Page, old_session_id: str) -> None:
    """Disconnect ends the session; Connect starts a fresh one that plays again."""
    page.click("#connect")
    page.wait_for_function(
        "document.getElementById('conn-state').textContent === 'disconnected'", timeout=5_000
    )
    page.click("#connect")
    page.wait_for_function(
        "document.getElementById('conn-state').textContent === 'connected'", timeout=15_000
    )
    assert page.locator("#session-id").inner_text() != old_session_id
    _wait_frames(page, 10, timeout_s=15)
