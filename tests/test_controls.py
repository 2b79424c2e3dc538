"""Live controls: validation, easing, what each control does to motion, and to the picture."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engines.face.encoder import FaceEncoder, FaceEncoderConfig
from engines.motion import space as ms
from engines.motion.baseline import BaselineConfig, ProceduralMotionSource
from engines.motion.controls import EMOTIONS, ControlMixer, Controls
from engines.render.renderer import FaceRenderer
from engines.types import MotionWindow
from tests.portraits import landmarks_of

FPS = 30.0


def idle_motion(num_frames: int, seed: int = 3) -> MotionWindow:
    """Real source motion with saccades, sway and blinks: the baseline at rest."""
    return ProceduralMotionSource(BaselineConfig(), FPS, seed=seed).idle(num_frames)


def talking_motion(num_frames: int) -> MotionWindow:
    """Idle motion with a syllable-rate jaw and lip closures, as speech would drive them."""
    values = idle_motion(num_frames).values.copy()
    t = np.arange(num_frames) / FPS
    jaw = 0.35 * np.clip(np.sin(2 * math.pi * 4.0 * t), 0.0, None)
    values[:, ms.index_of("jawOpen")] = jaw
    values[:, ms.index_of("mouthClose")] = 0.3 * (jaw < 0.02)
    return MotionWindow(values, FPS, 0)


def mixed(controls: Controls, window: MotionWindow, snap: bool = True) -> np.ndarray:
    mixer = ControlMixer(FPS)
    mixer.set(controls)
    if snap:
        mixer.reset()
    return mixer.apply(window).values


def ch(values: np.ndarray, name: str) -> np.ndarray:
    return values[..., ms.index_of(name)]


# ---- Controls ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("gaze_yaw", 0.9),
        ("gaze_pitch", float("nan")),
        ("head_distance", 2.0),
        ("head_distance", "1.2"),
        ("emotion", "bored"),
        ("emotion_strength", -0.1),
        ("emotion_strength", True),
    ],
)
def test_invalid_controls_name_the_field_and_the_value(field: str, value: object) -> None:
    with pytest.raises(ValueError) as error:
        Controls(**{field: value})  # type: ignore[arg-type]
    message = str(error.value)
    assert field in message and repr(value) in message
    # Says what would have been accepted: a range or the list of choices.
    assert ("[" in message) or all(name in message for name in EMOTIONS)


def test_from_dict_updates_only_what_it_names() -> None:
    base = Controls(gaze_yaw=0.2, gaze_pitch=-0.1, emotion="sad", emotion_strength=0.5)
    updated = Controls.from_dict({"head_distance": 1, "emotion": "happy"}, base=base)
    assert updated == Controls(0.2, -0.1, 1.0, "happy", 0.5)
    assert isinstance(updated.head_distance, float)  # JSON ints come back as floats
    cleared = Controls.from_dict({"gaze_yaw": None}, base=updated)
    assert cleared.gaze_yaw is None and cleared.gaze_pitch == -0.1
    assert Controls.from_dict(cleared.to_dict()) == cleared
    assert Controls.from_dict({}) == Controls()


def test_from_dict_rejects_unknown_keys_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="zoom") as error:
        Controls.from_dict({"zoom": 1.2})
    assert all(key in str(error.value) for key in Controls().to_dict())
    with pytest.raises(ValueError, match="head_distance"):
        Controls.from_dict({"head_distance": None})


# ---- ControlMixer on motion -------------------------------------------------------------


def test_neutral_controls_leave_motion_unchanged() -> None:
    window = idle_motion(60)
    out = ControlMixer(FPS).apply(window)
    assert out.pts == window.pts and out.fps == window.fps
    np.testing.assert_array_equal(out.values, window.values)


def test_returning_to_neutral_gives_back_the_source_exactly() -> None:
    window = idle_motion(120)
    mixer = ControlMixer(FPS)
    mixer.set(Controls(gaze_yaw=0.3, head_distance=1.2, emotion="angry"))
    mixer.apply(MotionWindow(window.values[:30], FPS, 0))
    mixer.set(Controls())
    out = mixer.apply(MotionWindow(window.values[30:], FPS, 30)).values
    assert not np.array_equal(out[0], window.values[30])
    np.testing.assert_array_equal(out[-30:], window.values[-30:])


def test_gaze_target_eases_in_keeps_some_saccades_and_turns_the_head() -> None:
    window = idle_motion(60)
    source_gaze, source_yaw = ch(window.values, "gazeYaw"), ch(window.values, "headYaw")
    assert np.ptp(source_gaze) > 0.02  # the source moves its eyes, or this test says nothing
    out = mixed(Controls(gaze_yaw=0.3), window, snap=False)
    gaze = ch(out, "gazeYaw")
    expected = 0.3 + 0.3 * source_gaze  # settled: target plus a small share of the source
    # First frame after set: on its way, not there yet; then no jumps on the way.
    assert source_gaze[0] < gaze[0] < 0.5 * (source_gaze[0] + expected[0])
    assert np.max(np.abs(np.diff(gaze))) < 0.25 * 0.3
    assert abs(gaze[9] - expected[9]) < 0.05 * 0.3  # ~95% there after ease_s
    np.testing.assert_allclose(gaze[-20:], expected[-20:], atol=1e-4)
    np.testing.assert_allclose(ch(out, "headYaw")[-20:], source_yaw[-20:] + 0.075, atol=1e-4)
    assert np.std(gaze[-30:]) > 0.1 * np.std(source_gaze[-30:])  # eyes stay alive


def test_cleared_gaze_eases_back_to_the_source() -> None:
    window = idle_motion(90)
    mixer = ControlMixer(FPS)
    mixer.set(Controls(gaze_pitch=-0.2))
    mixer.reset()
    first = mixer.apply(MotionWindow(window.values[:30], FPS, 0)).values
    assert ch(first, "gazePitch")[-1] < -0.15
    mixer.set(Controls())
    back = mixer.apply(MotionWindow(window.values[30:], FPS, 30)).values
    source = ch(window.values[30:], "gazePitch")
    assert -0.2 < ch(back, "gazePitch")[0] - source[0] < 0
    np.testing.assert_array_equal(ch(back, "gazePitch")[-20:], source[-20:])


def test_head_distance_scales_head_scale() -> None:
    window = idle_motion(10)
    window.values[:, ms.index_of("headScale")] = np.linspace(0.9, 1.1, 10)
    for distance in (0.8, 1.25):
        out = mixed(Controls(head_distance=distance), window)
        np.testing.assert_allclose(
            ch(out, "headScale"), distance * ch(window.values, "headScale"), rtol=1e-6
        )


# What each emotion must show, written from the face, not copied from the module.
RAISED = {
    "happy": ("mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft", "cheekSquintRight"),
    "sad": ("browInnerUp", "mouthFrownLeft", "mouthFrownRight"),
    "surprised": ("browInnerUp", "browOuterUpLeft", "browOuterUpRight", "eyeWideLeft"),
    "angry": ("browDownLeft", "browDownRight", "noseSneerLeft", "eyeSquintRight"),
}
UNTOUCHED = {
    "happy": ("mouthFrownLeft", "browDownLeft", "eyeWideLeft"),
    "sad": ("mouthSmileLeft", "eyeWideLeft", "noseSneerLeft"),
    "surprised": ("browDownLeft", "mouthSmileLeft", "eyeSquintLeft"),
    "angry": ("mouthSmileLeft", "browInnerUp", "eyeWideLeft"),
}


@pytest.mark.parametrize("emotion", EMOTIONS[1:])
def test_emotion_raises_its_channels_and_keeps_lip_sync(emotion: str) -> None:
    window = talking_motion(45)
    source = window.values
    full = mixed(Controls(emotion=emotion), window)
    half = mixed(Controls(emotion=emotion, emotion_strength=0.5), window)
    for name in RAISED[emotion]:
        lift = ch(full, name) - ch(source, name)
        assert np.all(lift > 0.1), name
        np.testing.assert_allclose(ch(half, name) - ch(source, name), 0.5 * lift, atol=1e-5)
    for name in UNTOUCHED[emotion]:
        np.testing.assert_array_equal(ch(full, name), ch(source, name))
    # Speech still drives the mouth: the jaw keeps its every move, the closures stay.
    np.testing.assert_allclose(
        np.diff(ch(full, "jawOpen")), np.diff(ch(source, "jawOpen")), atol=1e-6
    )
    assert np.all(ch(full, "jawOpen") - ch(source, "jawOpen") < 0.15)
    np.testing.assert_array_equal(ch(full, "mouthClose"), ch(source, "mouthClose"))


def test_output_is_clipped_to_the_motion_ranges() -> None:
    values = idle_motion(20).values.copy()
    for name in ("eyeWideLeft", "browInnerUp", "mouthSmileLeft", "browDownLeft"):
        values[:, ms.index_of(name)] = 0.95
    values[:, ms.index_of("headScale")] = 1.4
    window = MotionWindow(values, FPS, 0)
    for emotion in EMOTIONS:
        out = mixed(Controls(gaze_yaw=0.6, head_distance=1.4, emotion=emotion), window)
        np.testing.assert_array_equal(out, ms.clip_motion(out.copy()))
    assert np.all(ch(out, "headScale") == ms.MOTION_RANGES["headScale"].high)


def test_chunking_does_not_change_the_result() -> None:
    window = idle_motion(40)
    changes = {0: Controls(gaze_yaw=-0.3, emotion="happy"), 10: Controls(head_distance=0.8)}

    def run(chunks: list[int]) -> np.ndarray:
        mixer, start, outputs = ControlMixer(FPS), 0, []
        for size in chunks:
            if start in changes:
                mixer.set(changes[start])
            part = MotionWindow(window.values[start : start + size], FPS, start)
            outputs.append(mixer.apply(part).values)
            start += size
        return np.concatenate(outputs)

    whole = run([10, 30])
    np.testing.assert_array_equal(whole, run([1] * 10 + [7, 3, 15, 15]))


def test_mixer_rejects_a_window_at_another_frame_rate() -> None:
    with pytest.raises(ValueError, match="fps"):
        ControlMixer(25.0).apply(idle_motion(3))


# ---- On the picture ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> FaceRenderer:
    cache = tmp_path_factory.mktemp("avatars")
    return FaceRenderer(FaceEncoder(FaceEncoderConfig(cache_dir=cache)).encode(None))


def rendered_landmarks(renderer: FaceRenderer, controls: Controls) -> np.ndarray:
    """Landmarks MediaPipe finds on the portrait rendered under controls: (478, 3) pixels."""
    window = MotionWindow(ms.neutral_motion(1), FPS, 0)
    return landmarks_of(renderer.render(mixed(controls, window))[0])


@pytest.fixture(scope="module")
def neutral_landmarks(renderer: FaceRenderer) -> np.ndarray:
    return rendered_landmarks(renderer, Controls())


CORNERS = [61, 291]  # outer mouth corners
BROWS = [105, 334]  # middle of each brow
LIDS = [(159, 145), (386, 374)]  # upper and lower lid middle, each eye


@pytest.mark.parametrize("emotion", EMOTIONS[1:])
def test_emotion_reads_on_the_rendered_face(
    renderer: FaceRenderer, neutral_landmarks: np.ndarray, emotion: str
) -> None:
    face = rendered_landmarks(renderer, Controls(emotion=emotion))
    base = neutral_landmarks

    def up(points: list[int]) -> np.ndarray:  # image y grows downwards
        return base[points, 1] - face[points, 1]

    widen = np.ptp(face[CORNERS, 0]) - np.ptp(base[CORNERS, 0])
    opening = [(face[lo, 1] - face[hi, 1]) - (base[lo, 1] - base[hi, 1]) for hi, lo in LIDS]
    if emotion == "happy":
        assert np.all(up(CORNERS) > 3.0) and widen > 3.0, (up(CORNERS), widen)
    elif emotion == "sad":
        assert np.all(up(CORNERS) < -3.0) and np.all(up(BROWS) > 2.0)
    elif emotion == "surprised":
        assert np.all(up(BROWS) > 6.0) and min(opening) > 2.0, (up(BROWS), opening)
    else:
        assert np.all(up(BROWS) < -2.5) and max(opening) < -0.5, (up(BROWS), opening)
