"""engines.pipeline: the one streaming loop, speech at 48 kHz in, frames out, live or offline."""

from __future__ import annotations

import numpy as np
import pytest

from engines.face.encoder import FaceEncoder, FaceEncoderConfig
from engines.pipeline import INPUT_RATE, Pipeline, PipelineConfig, check_fps
from tests.speech import load_wav

FPS = 25
TICK = INPUT_RATE // FPS


@pytest.fixture(scope="module")
def avatar(tmp_path_factory: pytest.TempPathFactory):
    return FaceEncoder(FaceEncoderConfig(cache_dir=tmp_path_factory.mktemp("avatars"))).encode()


@pytest.fixture(scope="module")
def speech(speech_path) -> np.ndarray:  # type: ignore[no-untyped-def]
    samples, _ = load_wav(speech_path, INPUT_RATE)
    return samples[: 2 * INPUT_RATE].astype(np.float32)  # 1 s of silence, 1 s of speech


def _run(
    pipeline: Pipeline, samples: np.ndarray, chunk: int, flush: bool = True, **push: object
) -> list:
    frames = []
    for start in range(0, len(samples), chunk):
        frames += pipeline.push(samples[start : start + chunk], **push)  # type: ignore[arg-type]
    return frames + (pipeline.flush(**push) if flush else [])  # type: ignore[arg-type]


def test_frames_do_not_depend_on_how_the_audio_is_chunked(avatar, speech: np.ndarray) -> None:
    every_tick = _run(Pipeline(avatar, PipelineConfig(fps=FPS)), speech, TICK)
    odd_chunks = _run(Pipeline(avatar, PipelineConfig(fps=FPS)), speech, 7919)
    assert [f.pts for f in every_tick] == list(range(2 * FPS))  # one frame per 1/fps of audio
    assert [f.pts for f in odd_chunks] == [f.pts for f in every_tick]
    for a, b in zip(every_tick[::10], odd_chunks[::10], strict=True):
        assert a.rgb.shape == (avatar.image_size, avatar.image_size, 3) and a.rgb.dtype == np.uint8
        # The same frames, up to float32 rounding in the resampler (a level here and there).
        difference = np.abs(a.rgb.astype(int) - b.rgb.astype(int))
        assert difference.max() <= 1 and difference.mean() < 1e-3


def test_frames_the_caller_refuses_keep_their_place_without_pixels(avatar, speech) -> None:
    pipeline = Pipeline(avatar, PipelineConfig(fps=FPS))
    frames = _run(pipeline, speech[: INPUT_RATE // 2], TICK, render=lambda pts: pts % 2 == 0)
    drawn = [f for f in frames if f.rgb is not None]
    assert [f.pts for f in drawn] == [f.pts for f in frames if f.pts % 2 == 0]
    refused = [f for f in frames if f.pts % 2]
    assert refused and all(f.rgb is None and f.render_s == 0 for f in refused)
    assert all(f.render_s > 0 for f in drawn)


def test_skipped_ticks_keep_the_frame_numbers_on_the_stream_clock(avatar, speech) -> None:
    pipeline = Pipeline(avatar, PipelineConfig(fps=FPS))
    before = [f.pts for f in _run(pipeline, speech[: 10 * TICK], TICK, flush=False)]
    for _ in range(5):  # five ticks nobody watched
        pipeline.skip()
    after = []
    for start in range(0, 10 * TICK, TICK):
        after += [f.pts for f in pipeline.push(speech[start : start + TICK])]
    assert before == list(range(before[-1] + 1)) and after[0] == before[-1] + 1 + 5


def test_rest_frame_and_fps_rules(avatar) -> None:
    rest = Pipeline(avatar, PipelineConfig(fps=FPS)).rest_frame()
    assert rest.pts == -1 and rest.rgb.shape == (avatar.image_size, avatar.image_size, 3)
    check_fps(40, (1, 40))
    with pytest.raises(ValueError, match="between 1 and 40"):
        check_fps(41, (1, 40))
    with pytest.raises(ValueError, match="between 1 and 60"):
        PipelineConfig(fps=61)


def test_cut_shuts_the_mouth_at_once_then_hands_back_to_the_motion(avatar, speech) -> None:
    """Barge-in: after cut() the mouth is shut for CUT_HOLD_S although the motion source
    heard speech, then the frames are the uncut pipeline's again."""
    from engines.face import landmarks as fl
    from engines.pipeline import CUT_HOLD_S, CUT_RELEASE_S

    talking, cut = (Pipeline(avatar, PipelineConfig(fps=FPS)) for _ in range(2))
    lead = int(1.2 * INPUT_RATE) // TICK * TICK  # 0.2 s into the speech
    before = _run(talking, speech[:lead], TICK, flush=False)
    assert len(_run(cut, speech[:lead], TICK, flush=False)) == len(before)
    cut.cut()
    rest = speech[lead:]
    talked, shut = _run(talking, rest, TICK), _run(cut, rest, TICK)
    hold = int(CUT_HOLD_S * FPS)
    gaps = [fl.inner_lip_gap(fl.face_mesh(f.rgb)) for f in talked[:hold]]
    shut_gaps = [fl.inner_lip_gap(fl.face_mesh(f.rgb)) for f in shut[:hold]]
    assert max(gaps) > 0.04, gaps  # the uncut face was talking then
    assert max(shut_gaps) < 0.02, shut_gaps
    settled = hold + int(np.ceil(CUT_RELEASE_S * FPS))
    for a, b in zip(talked[settled:], shut[settled:], strict=True):
        assert a.pts == b.pts and np.array_equal(a.rgb, b.rgb)
