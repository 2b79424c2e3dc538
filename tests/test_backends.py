"""Backend selection: every stage on every backend available here gives the torch-cpu result.

The graph backends run the real exported graphs on onnxruntime; the GPU ones
are marked and skip without CUDA. The cross-session batcher runs real threads
over the real denoiser.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.backends.batching import CoalescingDenoiser
from engines.backends.denoiser import TracedDenoiser
from engines.backends.graphs import motion_graphs, renderer_graph
from engines.backends.registry import (
    BACKEND_NAMES,
    BackendConfig,
    check_backend,
    frame_renderer,
    motion_stages,
)
from engines.backends.torch_backend import CudaFrameRenderer, TracedFrameRenderer
from engines.errors import BackendUnavailableError
from engines.face.encoder import FaceEncoder, FaceEncoderConfig
from engines.motion import MotionConfig
from engines.motion.checkpoint import load_motion_model
from engines.motion.learned import LearnedMotion, default_motion_model
from engines.motion.space import motion_from_dict, neutral_motion
from engines.paths import DEFAULT_CHECKPOINT
from engines.render.renderer import FaceRenderer, RendererConfig
from engines.training.corpus import synthesize
from engines.types import AudioChunk

RATE = 16000
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _has_onnxruntime() -> bool:
    try:
        check_backend("onnxruntime")
    except BackendUnavailableError:
        return False
    return True


needs_onnxruntime = pytest.mark.skipif(not _has_onnxruntime(), reason="onnx extra missing")


@pytest.fixture(scope="module")
def avatar(tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("avatars")
    return FaceEncoder(FaceEncoderConfig(cache_dir=cache)).encode(None)


@pytest.fixture(scope="module")
def graph_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    if shutil.which("flite") is None:
        pytest.skip("needs flite")
    return synthesize("Pop music by a warm open fire.", "slt", 1.0, None, RATE).samples


MOTIONS = np.stack(
    [
        neutral_motion(),
        motion_from_dict({"jawOpen": 0.6, "headYaw": 0.15, "headTx": 0.05}),
        motion_from_dict({"eyeBlinkLeft": 1.0, "gazePitch": 0.3, "jawOpen": 0.3}),
    ]
)


def stream_motion(samples: np.ndarray, backend: BackendConfig) -> np.ndarray:
    source = LearnedMotion(MotionConfig(), 25, seed=3, backend=backend)
    windows = [
        source.push(AudioChunk(samples[i : i + 640], RATE, i)) for i in range(0, len(samples), 640)
    ]
    windows.append(source.flush())
    return np.concatenate([w.values for w in windows if len(w)])


def test_unknown_backend_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="torch-cpu, torch-cuda"):
        BackendConfig("cuda")
    with pytest.raises(ValueError, match="got 'ort'"):
        BackendConfig("torch-cpu", motion_name="ort")
    assert BackendConfig("torch-cpu", motion_name="torch-cpu").motion.label == "torch-cpu"
    assert BackendConfig("torch-cpu", motion_name="onnxruntime").label == "torch-cpu/onnxruntime"
    assert "tensorrt" in BACKEND_NAMES and "onnxruntime-cuda" in BACKEND_NAMES


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["torch-cuda", "tensorrt"])
def test_gpu_backend_without_cuda_says_what_to_do(name: str) -> None:
    with pytest.raises(BackendUnavailableError, match="torch-cpu") as caught:
        check_backend(name)
    assert "facecast[gpu]" in str(caught.value) and torch.__version__ in str(caught.value)


@needs_onnxruntime
def test_missing_execution_provider_names_the_ones_present() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendUnavailableError, match="CPUExecutionProvider"):
        check_backend("onnxruntime-cuda")


@needs_onnxruntime
def test_onnxruntime_renderer_matches_torch(avatar, graph_dir: Path) -> None:
    backend = BackendConfig("onnxruntime", cache_dir=graph_dir)
    on_graph = frame_renderer(avatar, RendererConfig(), backend)
    reference = FaceRenderer(avatar).render(MOTIONS)
    frames = on_graph.render(MOTIONS)
    assert frames.shape == reference.shape and frames.dtype == np.uint8
    assert np.abs(frames.astype(int) - reference.astype(int)).max() <= 1
    assert np.abs(frames[1].astype(int) - frames[0].astype(int)).max() > 50  # the motion shows


def test_the_cpu_renderer_replays_traced_graphs_with_the_eager_pixels(avatar) -> None:
    """torch-cpu renders eagerly, then from traced graphs (with and without the lid pass)
    once a stream is under way: the same frames, open eyes and shut alike."""
    traced = frame_renderer(avatar, RendererConfig(), BackendConfig())
    assert isinstance(traced, TracedFrameRenderer)
    eager = [FaceRenderer(avatar).render(m) for m in MOTIONS]  # the third shuts a lid
    before = [traced.render(m) for m in MOTIONS]
    assert traced.warm(timeout_s=60)
    after = [traced.render(m) for m in MOTIONS]
    for frames in (before, after):
        for got, expected in zip(frames, eager, strict=True):
            assert got.dtype == np.uint8 and np.array_equal(got, expected)
    assert np.abs(after[1].astype(int) - after[0].astype(int)).max() > 50  # the motion shows
    # Batches other than one stay eager, and agree too.
    assert np.array_equal(traced.render(MOTIONS), np.concatenate(eager))


def test_an_untraced_cpu_renderer_draws_eagerly_until_warmed(avatar) -> None:
    renderer = TracedFrameRenderer(FaceRenderer(avatar), trace=False)
    eager = FaceRenderer(avatar).render(MOTIONS[1])
    assert np.array_equal(renderer.render(MOTIONS[1]), eager)
    assert renderer._preparing is None and renderer._key is None  # never traced by itself
    assert renderer.warm(timeout_s=60)
    assert np.array_equal(renderer.render(MOTIONS[1]), eager)


def test_traced_graphs_are_shared_by_a_portraits_sessions_and_by_no_other_portrait(
    avatar,
) -> None:
    first = TracedFrameRenderer(FaceRenderer(avatar))
    assert first.warm(timeout_s=60)
    second = TracedFrameRenderer(FaceRenderer(avatar))
    assert second.warm(timeout_s=5) and second._key == first._key  # found, not traced again
    other_image = avatar.image.copy()
    other_image[: avatar.image_size // 2] //= 2  # another portrait (darker above)
    other = FaceRenderer(dataclasses.replace(avatar, image=other_image))
    traced_other = TracedFrameRenderer(other)
    assert traced_other.warm(timeout_s=60) and traced_other._key != first._key
    assert np.array_equal(traced_other.render(MOTIONS[1]), other.render(MOTIONS[1]))


@needs_onnxruntime
def test_graphs_are_exported_once_per_portrait_and_config(avatar, graph_dir: Path) -> None:
    backend = BackendConfig("onnxruntime", cache_dir=graph_dir)
    frame_renderer(avatar, RendererConfig(), backend)
    graphs = {p: p.stat().st_mtime_ns for p in graph_dir.glob("face_renderer-*.onnx")}
    frame_renderer(avatar, RendererConfig(), backend)
    assert {p: p.stat().st_mtime_ns for p in graph_dir.glob("face_renderer-*.onnx")} == graphs
    frame_renderer(avatar, RendererConfig(inverse_iterations=3), backend)
    assert len(list(graph_dir.glob("face_renderer-*.onnx"))) == len(graphs) + 1
    assert not list(graph_dir.glob("*.tmp"))


@needs_onnxruntime
def test_graphs_export_when_the_caller_is_in_inference_mode(avatar, tmp_path: Path) -> None:
    """The server builds its engines under inference_mode; export traces with autograd."""
    with torch.inference_mode():
        model = load_motion_model(DEFAULT_CHECKPOINT)
        paths = motion_graphs(model, tmp_path)
        renderer = renderer_graph(FaceRenderer(avatar), tmp_path)
    assert all(p.stat().st_size > 100_000 for p in (*paths.values(), renderer))


@needs_onnxruntime
@pytest.mark.parametrize("renderer_backend", ["onnxruntime", "torch-cpu"])
def test_learned_motion_on_onnxruntime_matches_torch(
    speech: np.ndarray, graph_dir: Path, renderer_backend: str
) -> None:
    """All stages on onnxruntime, or only the motion stages (--motion-backend)."""
    reference = stream_motion(speech, BackendConfig())
    backend = BackendConfig(renderer_backend, cache_dir=graph_dir, motion_name="onnxruntime")
    assert backend.motion.name == "onnxruntime"
    on_graph = stream_motion(speech, backend)
    assert not isinstance(motion_stages(default_motion_model(), backend).denoiser, torch.nn.Module)
    assert on_graph.shape == reference.shape
    # Four guided steps per frame and the sampler's own history amplify 1e-6 graph
    # differences a little; the motion stays the same to well under a visible amount.
    assert np.abs(on_graph - reference).max() < 2e-3
    assert reference[:, 6:].std(0).max() > 0.05  # the face moved


def test_motion_stages_are_shared_per_model_and_backend() -> None:
    model = default_motion_model()
    assert motion_stages(model, BackendConfig()) is motion_stages(model, BackendConfig())
    denoiser = motion_stages(model, BackendConfig()).denoiser
    assert isinstance(denoiser, TracedDenoiser) and denoiser.module is model.denoiser


def test_the_traced_denoiser_gives_the_modules_numbers_at_every_shape() -> None:
    module = default_motion_model().denoiser
    traced = TracedDenoiser(module, max_shapes=2)
    for rows in (3, 1, 2):  # the third shape is past max_shapes: the module runs it
        feeds = _denoiser_feeds(rows, rows)
        with torch.inference_mode():
            expected = module(*feeds)
        for _ in range(2):  # traced on the first call, replayed on the second
            assert torch.allclose(traced(*feeds), expected, atol=1e-6), rows
    assert len(traced._graphs) == 2
    # Masks stay inputs, not constants of the trace: dropping the audio changes the output.
    sample, t, audio, prev, controls, _, drop_prev, drop_controls = _denoiser_feeds(7)
    heard, unheard = (
        traced(sample, t, audio, prev, controls, torch.tensor(mask), drop_prev, drop_controls)
        for mask in ([False] * 3, [True] * 3)
    )
    assert (heard - unheard).abs().max() > 1e-3


def _denoiser_feeds(seed: int, rows: int = 3) -> tuple[torch.Tensor, ...]:
    model = default_motion_model()
    c, w, k = model.config, model.window, model.prefix
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(rows, w, c.motion_dim, generator=g),
        torch.randint(0, 1000, (rows,), generator=g),
        torch.randn(rows, w, c.audio_channels, generator=g),
        torch.randn(rows, k, c.motion_dim, generator=g),
        torch.randn(rows, w, 9, generator=g),
        torch.tensor([False, False, True][:rows]),
        torch.zeros(rows, dtype=torch.bool),
        torch.tensor([False, True, True][:rows]),
    )


class _SlowDenoiser:
    """The real denoiser, held for a moment per batch so that concurrent callers pile up."""

    def __init__(self) -> None:
        self.module = default_motion_model().denoiser
        self.batch_rows: list[int] = []

    @torch.inference_mode()
    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        self.batch_rows.append(args[0].shape[0])
        threading.Event().wait(0.02)
        return self.module(*args)


def _call_together(
    batched: CoalescingDenoiser, feeds: list[tuple[torch.Tensor, ...]]
) -> dict[int, torch.Tensor]:
    """Each feed from its own thread, all released at once; results by feed index."""
    results: dict[int, torch.Tensor] = {}
    start = threading.Barrier(len(feeds))

    def call(i: int) -> None:
        start.wait()
        results[i] = batched(*feeds[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_concurrent_denoiser_calls_batch_and_each_gets_its_own_rows() -> None:
    inner = _SlowDenoiser()
    batched = CoalescingDenoiser(inner)
    feeds = [_denoiser_feeds(seed) for seed in range(8)]
    with torch.inference_mode():
        expected = [inner.module(*f) for f in feeds]
    results = _call_together(batched, feeds)
    assert sorted(results) == list(range(len(feeds)))
    for i, value in results.items():
        assert torch.allclose(value, expected[i], atol=1e-5), i
    assert batched.calls == len(feeds) and batched.batches < len(feeds)
    assert max(inner.batch_rows) > 3  # at least one batch held several sessions' rows


def test_batches_stay_within_max_rows_and_every_call_is_served() -> None:
    inner = _SlowDenoiser()
    batched = CoalescingDenoiser(inner, max_rows=6)
    feeds = [_denoiser_feeds(seed) for seed in range(7)]
    with torch.inference_mode():
        expected = [inner.module(*f) for f in feeds]
    results = _call_together(batched, feeds)
    assert sorted(results) == list(range(len(feeds)))
    assert all(torch.allclose(results[i], expected[i], atol=1e-5) for i in results)
    assert max(inner.batch_rows) == 6 and sum(inner.batch_rows) == 3 * len(feeds)


def test_a_lone_caller_runs_at_once_and_gets_the_denoisers_error() -> None:
    inner = _SlowDenoiser()
    batched = CoalescingDenoiser(inner)
    for seed in range(3):
        batched(*_denoiser_feeds(seed))
    assert inner.batch_rows == [3, 3, 3]
    bad = list(_denoiser_feeds(0))
    bad[2] = bad[2][:, :, :5]  # wrong audio width: the denoiser itself rejects it
    with pytest.raises(ValueError, match="audio must be"):
        batched(*bad)
    assert batched(*_denoiser_feeds(1)).shape == (3, *_denoiser_feeds(1)[0].shape[1:])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("cuda_graphs", [True, False])
def test_cuda_renderer_matches_cpu(avatar, cuda_graphs: bool) -> None:
    gpu = CudaFrameRenderer(FaceRenderer(avatar).cuda(), cuda_graphs)
    reference = FaceRenderer(avatar).render(MOTIONS)
    for _ in range(2):  # the second call replays the captured graph
        for batch in (MOTIONS[:1], MOTIONS):
            frames = gpu.render(batch)
            assert np.abs(frames.astype(int) - reference[: len(batch)].astype(int)).max() <= 2
    assert gpu.cuda_graphs == cuda_graphs  # capture did not fall back


@pytest.mark.gpu
@needs_cuda
def test_learned_motion_on_torch_cuda_matches_cpu(speech: np.ndarray) -> None:
    reference = stream_motion(speech, BackendConfig())
    on_gpu = stream_motion(speech, BackendConfig("torch-cuda"))
    assert np.abs(on_gpu - reference).max() < 2e-3


def test_the_registry_finds_every_backend_module_and_its_names() -> None:
    import pkgutil

    import engines.backends
    from engines.backends.registry import provider

    modules = sorted(
        m.name
        for m in pkgutil.iter_modules(engines.backends.__path__)
        if m.name.endswith("_backend")
    )
    assert modules == ["onnxruntime_backend", "tensorrt_backend", "torch_backend"]
    owners = {name: type(provider(name)).__module__.rsplit(".", 1)[1] for name in BACKEND_NAMES}
    assert owners == {
        "torch-cpu": "torch_backend",
        "torch-cuda": "torch_backend",
        "onnxruntime": "onnxruntime_backend",
        "onnxruntime-cuda": "onnxruntime_backend",
        "onnxruntime-tensorrt": "onnxruntime_backend",
        "tensorrt": "tensorrt_backend",
    }
    assert [BackendConfig(n).on_gpu for n in BACKEND_NAMES] == [
        False,
        True,
        False,
        True,
        True,
        True,
    ]
