"""benchmarks/gpu_check.sh in CPU mode, with the GPU machine's missing packages hidden.

The lent GPU machine has no mediapipe, PyAV or aiortc: the check must run on
inputs prepared here and import none of them. --simulate-device makes those
imports fail in every Python process the script starts (the check and its
`pytest -m gpu` child). No timing is asserted: the machine is shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gpu_check_inputs import prepare

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare(tmp_path_factory.mktemp("gpu_check_inputs"))


def test_inputs_are_small_enough_to_carry(inputs: Path) -> None:
    size = sum(p.stat().st_size for p in inputs.iterdir())
    assert size < 20 * 2**20, size
    assert json.loads((inputs / "inputs.json").read_text())["rate"] == 16000


def test_cpu_quick_mode_runs_without_mediapipe_av_aiortc(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "FACECAST_GPU_CHECK_INPUTS": str(inputs), "OMP_NUM_THREADS": "1"}
    env["PYTHON"] = sys.executable
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--cpu", "--quick", "--simulate-device", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((out / "gpu_check_cpu.json").read_text())
    rows = data["rows"]
    assert {r["check"] for r in rows} == set(data["checks"])  # a row from every check
    assert not [r for r in rows if r["status"] == "error"], [
        r for r in rows if r["status"] == "error"
    ]
    environment = rows[0]["note"]
    assert "none importable" in environment, environment  # the packages really were hidden
    assert all(r["status"] == "ok" for r in rows if r["check"] == "correctness" and r["value"])
    assert (out / "gpu_check_cpu.md").read_text().startswith("# GPU check (cpu quick)")
    assert "| check | case | status |" in done.stdout  # the short table comes last


def test_the_pytest_plugin_serves_the_prepared_avatar_without_mediapipe(
    inputs: Path, tmp_path: Path
) -> None:
    script = f"""
import sys
sys.modules["mediapipe"] = None
from pathlib import Path
import numpy as np
from benchmarks.gpu_check_pytest import pytest_configure
from engines.face.encoder import FaceEncoder, FaceEncoderConfig
pytest_configure(None)
avatar = FaceEncoder(FaceEncoderConfig(cache_dir=Path({str(tmp_path)!r}))).encode(None)
np.save({str(tmp_path / "image.npy")!r}, avatar.image)
"""
    env = {**os.environ, "FACECAST_GPU_CHECK_AVATAR": str(inputs / "avatar.npz")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(inputs / "avatar.npz") as prepared:
        assert np.array_equal(np.load(tmp_path / "image.npy"), prepared["image"])
