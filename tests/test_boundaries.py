"""Import boundaries: data flows one way (server -> engines), the server holds no model math
(no torch), and a live server never loads the training code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative ones resolved to its package)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                found.add(node.module)
    return found


def _offenders(folder: str, forbidden: str) -> dict[str, list[str]]:
    bad = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        hits = sorted(m for m in _imports(path) if m == forbidden or m.startswith(forbidden + "."))
        if hits:
            bad[str(path.relative_to(ROOT))] = hits
    return bad


def test_engines_never_import_the_server() -> None:
    assert _offenders("engines", "server") == {}


def test_the_server_holds_no_model_math() -> None:
    assert _offenders("server", "torch") == {}


def test_the_import_checker_sees_relative_and_absolute_imports() -> None:
    learned = _imports(ROOT / "engines" / "motion" / "learned.py")
    assert "engines.backends.registry" in learned and "torch" in learned
    assert "engines.motion.config" in learned  # from .config import ...


_LIVE_SERVER = """
import asyncio, json, sys, tempfile
from pathlib import Path
from server.app import create_app
from server.config import load_config

async def main():
    data = tempfile.mkdtemp()
    app = create_app(load_config({"FACECAST_DATA_DIR": data}))
    state = app.state.facecast
    await state.startup()  # what `facecast serve` does before it answers
    session = await state.sessions.create()
    await asyncio.sleep(0.3)
    await state.shutdown()

asyncio.run(main())
print(json.dumps(sorted(m for m in sys.modules if m.startswith("engines."))))
"""


def test_a_live_server_never_loads_the_training_code(tmp_path: Path) -> None:
    env = {"FACECAST_CACHE_DIR": str(tmp_path / "avatars"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", _LIVE_SERVER],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "engines.pipeline" in loaded and "engines.motion.learned" in loaded  # it did run
    assert [m for m in loaded if m.startswith("engines.training")] == []
