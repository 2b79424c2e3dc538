"""The watermark key: a private key's mark is found only with that key, the key comes from
flags, environment or a file (never both, never empty), and nothing reports the key itself.

Renders and `facecast verify` on MP4s with a private key are in test_provenance.py, beside
the renders they reuse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from engines.paths import default_portrait_path
from engines.provenance import (
    DEFAULT_KEY,
    ProvenanceConfig,
    WatermarkConfig,
    WatermarkDetector,
    WatermarkEmbedder,
    detect,
)
from engines.provenance.watermark import _layout
from server.app import create_app
from server.cli import main
from server.config import ServerConfig, load_config

KEY = "correct-horse-battery-staple-7f3a"  # a private key, as an operator would set one
PAYLOAD = 0x0C0FFE_0123456789


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """The built-in portrait, (256, 256, 3) uint8: the mark's host, as in test_provenance."""
    image = Image.open(default_portrait_path()).convert("RGB").resize((256, 256))
    return np.asarray(image)


def _marked(portrait: np.ndarray, key: bytes) -> list[np.ndarray]:
    """Four frames of the portrait carrying PAYLOAD under `key`."""
    frame = WatermarkEmbedder(PAYLOAD, WatermarkConfig(key=key)).embed(portrait)
    return [frame] * 4


# ---- the mark ---------------------------------------------------------------------------


def test_a_private_key_mark_is_found_with_that_key_only(portrait: np.ndarray) -> None:
    private, public = WatermarkConfig(key=KEY.encode()), WatermarkConfig()
    with_private = _marked(portrait, KEY.encode())
    found = detect(with_private, private)
    assert found.marked and found.payload == PAYLOAD
    assert not detect(with_private, public).marked
    with_public = _marked(portrait, DEFAULT_KEY)
    assert detect(with_public, public).payload == PAYLOAD
    assert not detect(with_public, private).marked
    assert not detect([portrait] * 4, private).marked  # unmarked stays unmarked


def test_two_keys_share_one_pass_and_count_both_in_the_p_value(portrait: np.ndarray) -> None:
    detector = WatermarkDetector(WatermarkConfig(key=KEY.encode()))
    for frame in _marked(portrait, KEY.encode()):
        detector.add(frame)
    alone = detector.result()
    private, public = detector.results([KEY.encode(), DEFAULT_KEY])
    assert private.marked and private.payload == PAYLOAD and not public.marked
    assert private.z == alone.z and private.hypotheses == 2 * alone.hypotheses
    assert private.p_value == pytest.approx(min(1.0, 2 * alone.p_value))  # Bonferroni
    assert _layout(KEY.encode()) is _layout(KEY.encode())  # made once per key


def test_the_key_is_named_public_or_private_and_never_printed() -> None:
    assert WatermarkConfig().key_kind == "public"
    private = WatermarkConfig(key=KEY.encode())
    assert private.key_kind == "private"
    config = load_config({"FACECAST_WATERMARK_KEY": KEY})
    assert KEY not in repr(private) and KEY not in repr(config)  # configs get logged
    with pytest.raises(ValueError, match="empty"):
        WatermarkConfig(key=b" \n")


# ---- where the key comes from ------------------------------------------------------------


def test_the_key_comes_from_a_flag_the_environment_or_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "watermark.key"
    key_file.write_text(f"{KEY}\n")  # as `echo` or `openssl rand -hex 32 >` writes it

    def key_of(env: dict[str, str], **flags: str) -> bytes:
        return load_config(env, **flags).provenance.mark.key  # type: ignore[arg-type]

    assert key_of({}) == DEFAULT_KEY
    assert key_of({"FACECAST_WATERMARK_KEY": KEY}) == KEY.encode()
    assert key_of({"FACECAST_WATERMARK_KEY_FILE": str(key_file)}) == KEY.encode()
    assert key_of({}, watermark_key_file=str(key_file)) == KEY.encode()
    # Flags override the environment (both of its variables).
    env = {"FACECAST_WATERMARK_KEY": "from-env"}
    assert key_of(env, watermark_key="from-flag") == b"from-flag"
    assert key_of(env, watermark_key_file=str(key_file)) == KEY.encode()
    # The key travels with the rest of the provenance settings, the mark still on.
    provenance = load_config({"FACECAST_WATERMARK_KEY": KEY}).provenance
    assert provenance.watermark and provenance.mark.key_kind == "private"


@pytest.mark.parametrize(
    ("env", "flags", "message"),
    [
        ({"FACECAST_WATERMARK_KEY": "a", "FACECAST_WATERMARK_KEY_FILE": "f"}, {}, "not both"),
        ({}, {"watermark_key": "a", "watermark_key_file": "f"}, "not both"),
        ({"FACECAST_WATERMARK_KEY": ""}, {}, "FACECAST_WATERMARK_KEY is empty"),
        ({}, {"watermark_key": "  "}, "--watermark-key is empty"),
        ({"FACECAST_WATERMARK_KEY_FILE": ""}, {}, "name the file"),
        ({}, {"watermark_key_file": "{tmp}/missing.key"}, "cannot read the watermark key file"),
        ({}, {"watermark_key_file": "{tmp}"}, "cannot read the watermark key file"),  # a folder
        ({}, {"watermark_key_file": "{tmp}/empty.key"}, "is empty; write a key"),
        ({}, {"watermark_key_file": "{tmp}/huge.key"}, "over 4096 bytes"),
    ],
    ids=[
        "env-both",
        "flags-both",
        "env-empty",
        "flag-blank",
        "env-file-empty-name",
        "missing-file",
        "folder",
        "empty-file",
        "huge-file",
    ],
)
def test_bad_keys_are_refused_with_a_message(
    tmp_path: Path, env: dict[str, str], flags: dict[str, str], message: str
) -> None:
    (tmp_path / "empty.key").write_bytes(b"\n")
    (tmp_path / "huge.key").write_bytes(b"k" * 5000)
    flags = {name: value.format(tmp=tmp_path) for name, value in flags.items()}
    with pytest.raises(ValueError, match=message) as caught:
        load_config(env, **flags)  # type: ignore[arg-type]
    assert "k" * 50 not in str(caught.value)  # a key file's content is never echoed


def test_cli_refuses_bad_key_flags_with_exit_2_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    video = tmp_path / "clip.mp4"  # never opened: the key is checked first
    with pytest.raises(SystemExit) as caught:
        main(["verify", str(video), "--watermark-key", KEY, "--watermark-key-file", "f"])
    assert caught.value.code == 2
    assert "not allowed with argument --watermark-key" in capsys.readouterr().err
    missing = str(tmp_path / "missing.key")
    assert main(["verify", str(video), "--watermark-key-file", missing]) == 2
    assert capsys.readouterr().err.startswith("error: cannot read the watermark key file")
    monkeypatch.setenv("FACECAST_WATERMARK_KEY", KEY)
    monkeypatch.setenv("FACECAST_WATERMARK_KEY_FILE", missing)
    assert main(["verify", str(video)]) == 2
    assert "not both" in capsys.readouterr().err
    output = tmp_path / "out.mp4"
    args = ["render", "--audio", str(video), "-o", str(output), "--watermark-key", ""]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("error: --watermark-key is empty")
    assert not output.exists()


def test_serve_with_an_unreadable_key_file_exits_2_without_a_traceback(tmp_path: Path) -> None:
    """The real process: an operator's typo in the key file's name must not start a server
    marked with the public key."""
    missing = tmp_path / "missing.key"
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--port", "9", "--watermark-key-file",
         str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: cannot read the watermark key file {missing} (No such file or directory); "
        "check --watermark-key-file and that this user may read the file"
    ]


# ---- what the server reports -------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "kind"), [({}, "public"), ({"FACECAST_WATERMARK_KEY": KEY}, "private")]
)
def test_health_says_whose_key_marks_frames_never_the_key(
    tmp_path: Path, env: dict[str, str], kind: str
) -> None:
    config = load_config({**env, "FACECAST_DATA_DIR": str(tmp_path)})
    client = TestClient(create_app(config), base_url="http://localhost")
    response = client.get("/api/health")
    assert response.status_code == 200
    health = response.json()
    assert health["watermark"] is True and health["watermark_key"] == kind
    assert KEY not in response.text and DEFAULT_KEY.decode() not in response.text


def test_a_server_without_the_mark_still_reports_its_key(tmp_path: Path) -> None:
    provenance = ProvenanceConfig(watermark=False, mark=WatermarkConfig(key=KEY.encode()))
    app = create_app(ServerConfig(data_dir=tmp_path, provenance=provenance))
    health = TestClient(app, base_url="http://localhost").get("/api/health").json()
    assert health["watermark"] is False and health["watermark_key"] == "private"
