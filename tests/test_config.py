"""Server configuration: defaults, FACECAST_* variables, flag overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import IceServer, load_config
from server.session import playout_delay_s


def test_defaults_are_safe_for_a_laptop() -> None:
    config = load_config({})
    assert config.host == "127.0.0.1" and config.api_token is None
    assert config.ice_servers == () and config.cors_origins == ()
    assert config.session.fps == 25 and config.torch_threads == 1


def test_environment_then_flags() -> None:
    env = {
        "FACECAST_PORT": "9000",
        "FACECAST_API_TOKEN": "t",
        "FACECAST_CORS_ORIGINS": "http://a.example, http://b.example",
        "FACECAST_ICE_SERVERS": '[{"urls": "turn:t.example", "username": "u", "credential": "p"},'
        ' {"urls": ["stun:s1.example", "stun:s2.example"]}]',
        "FACECAST_DATA_DIR": "/tmp/facecast-data",
    }
    config = load_config(env, port=9100, fps=40, jitter_buffer_s=0.02, max_sessions=None)
    assert config.port == 9100  # the flag wins over the variable
    assert config.api_token == "t" and config.data_dir == Path("/tmp/facecast-data")
    assert config.cors_origins == ("http://a.example", "http://b.example")
    assert config.ice_servers == (
        IceServer(("turn:t.example",), "u", "p"),
        IceServer(("stun:s1.example", "stun:s2.example")),
    )
    assert config.session.fps == 40 and config.session.jitter_buffer_s == 0.02
    assert config.max_sessions == 4  # a flag left unset keeps the default


def test_motion_source_from_environment_then_flags() -> None:
    assert load_config({}).session.motion.kind == "learned"
    assert load_config({}).session.motion.checkpoint is None
    env = {"FACECAST_MOTION": "baseline", "FACECAST_MOTION_CHECKPOINT": "/m/a.safetensors"}
    config = load_config(env)
    assert config.session.motion.kind == "baseline"
    assert config.session.motion.checkpoint == Path("/m/a.safetensors")
    flagged = load_config(env, motion="learned", checkpoint=Path("/m/b.safetensors"))
    assert flagged.session.motion.kind == "learned"
    assert flagged.session.motion.checkpoint == Path("/m/b.safetensors")
    with pytest.raises(ValueError, match="motion must be one of learned, baseline"):
        load_config({"FACECAST_MOTION": "puppet"})


def test_backend_from_environment_then_flags() -> None:
    assert load_config({}).session.backend.name == "torch-cpu"
    env = {"FACECAST_BACKEND": "onnxruntime", "FACECAST_ENGINE_CACHE_DIR": "/c/engines"}
    config = load_config(env)
    assert config.session.backend.name == "onnxruntime"
    assert config.session.backend.graph_dir == Path("/c/engines")
    assert load_config(env, backend="tensorrt").session.backend.name == "tensorrt"
    assert config.session.backend.motion.name == "onnxruntime"  # motion follows the renderer
    split = load_config({**env, "FACECAST_MOTION_BACKEND": "torch-cpu"}).session.backend
    assert (split.name, split.motion.name) == ("onnxruntime", "torch-cpu")
    flagged = load_config(env, backend="torch-cpu", motion_backend="onnxruntime").session.backend
    assert (flagged.name, flagged.motion.name) == ("torch-cpu", "onnxruntime")
    with pytest.raises(ValueError, match="backend must be one of torch-cpu"):
        load_config({"FACECAST_BACKEND": "cuda"})


def test_bad_settings_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="FACECAST_ICE_SERVERS must be JSON"):
        load_config({"FACECAST_ICE_SERVERS": "stun:oops"})
    with pytest.raises(ValueError, match="fps must be between 1 and 40"):
        load_config({}, fps=60)
    with pytest.raises(ValueError, match="max_sessions"):
        load_config({}, max_sessions=0)


def test_playout_delay_is_look_ahead_plus_tick_plus_render_budget() -> None:
    config = load_config({}, fps=25).session
    assert playout_delay_s(config, 0.04) == pytest.approx(0.04 + 0.04 + 0.08)
    fast = load_config({}, fps=40, render_budget_s=0.03).session
    assert playout_delay_s(fast, 0.04) == pytest.approx(0.04 + 0.025 + 0.03)
    on_gpu = load_config({}, fps=25, backend="torch-cuda").session
    assert playout_delay_s(on_gpu, 0.08) == pytest.approx(0.08 + 0.04 + 0.02)
