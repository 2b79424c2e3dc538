"""The session's speech queue and playout buffers: ordering, jitter buffer, barge-in, bounds."""

from __future__ import annotations

import numpy as np
import pytest

from server.errors import SpeechQueueFullError
from server.playout import AudioRing, FrameStore, SessionClock, StoredFrame
from server.speech_queue import SpeechQueue, Utterance

RATE = SpeechQueue.RATE


def _queue(max_s: float = 10.0, jitter: int = 960) -> SpeechQueue:
    return SpeechQueue(int(max_s * RATE), jitter)


def _ramp(n: int, start: float = 0.0) -> np.ndarray:
    return (start + np.arange(n, dtype=np.float32)) / 1e5


def test_whole_utterances_play_in_order_with_start_and_end_offsets() -> None:
    queue = _queue()
    first, second = Utterance("tts", streaming=False), Utterance("upload", streaming=False)
    queue.add(first, _ramp(1500))
    queue.add(second, _ramp(700, 1500))
    taken = queue.take(1920)
    assert np.array_equal(taken.playback[:1920], _ramp(1920))
    assert [(u.id, offset) for u, offset in taken.started] == [(first.id, 0), (second.id, 1500)]
    assert [(u.id, offset) for u, offset in taken.finished] == [(first.id, 1500)]
    rest = queue.take(1920)
    assert np.array_equal(rest.playback[:280], _ramp(280, 1920))
    assert not rest.playback[280:].any()
    assert [(u.id, offset) for u, offset in rest.finished] == [(second.id, 280)]
    assert not rest.underrun


def test_streamed_utterance_waits_for_the_jitter_buffer_then_pads_underruns() -> None:
    queue = _queue(jitter=2000)
    stream = Utterance("websocket", streaming=True)
    queue.add(stream)
    queue.push(stream, _ramp(1000))
    waiting = queue.take(960)
    assert not waiting.playback.any() and not waiting.started
    queue.push(stream, _ramp(1000, 1000))
    taken = queue.take(1920)
    assert taken.started and np.array_equal(taken.playback, _ramp(1920))
    starved = queue.take(960)  # 80 samples left, utterance still open: pad, do not stall
    assert starved.underrun and np.array_equal(starved.playback[:80], _ramp(80, 1920))
    assert not starved.playback[80:].any() and not starved.finished
    stream.ended = True
    assert [u.id for u, _ in queue.take(960).finished] == [stream.id]


def test_clear_interrupts_everything_and_bounds_are_enforced() -> None:
    queue = _queue(max_s=0.1)
    whole = Utterance("tts", streaming=False)
    queue.add(whole, _ramp(3000))
    stream = Utterance("websocket", streaming=True)
    queue.add(stream)
    with pytest.raises(SpeechQueueFullError, match="full"):
        queue.push(stream, _ramp(3000))
    cut = queue.clear()
    assert {u.id for u in cut} == {whole.id, stream.id}
    assert all(u.interrupted for u in cut)
    assert queue.queued_samples == 0 and not queue.take(960).playback.any()
    with pytest.raises(ValueError, match="ended"):
        queue.push(stream, _ramp(10))


def test_microphone_lane_drives_speech_but_is_not_played_and_cannot_lag() -> None:
    queue = SpeechQueue(RATE, 960, max_live_samples=4800)
    for _ in range(20):  # 400 ms arrives while nothing is taken
        queue.push_live(np.full(960, 0.5, dtype=np.float32))
    taken = queue.take(9600)
    assert not taken.playback.any()
    kept = int(np.count_nonzero(taken.speech))
    assert 4800 <= kept < 4800 + 960  # only the newest ~100 ms survive


def test_audio_ring_reads_by_position_and_truncates_on_barge_in() -> None:
    ring = AudioRing(4800)
    ring.write(0, _ramp(2000))
    ring.write(2000, _ramp(2000, 2000))
    assert np.array_equal(ring.read(1500, 1000), _ramp(1000, 1500))
    ring.truncate(3000)
    tail = ring.read(2500, 1000)
    assert np.array_equal(tail[:500], _ramp(500, 2500)) and not tail[500:].any()
    ring.write(3500, _ramp(100, 9999))  # the gap after a truncate reads as silence
    assert not ring.read(3000, 500).any()
    ring.write(3600, _ramp(6000))  # older than capacity is forgotten, never wrong
    assert not ring.read(0, 100).any()


def test_frame_store_shows_due_frame_or_repeats_and_stays_bounded() -> None:
    store = FrameStore(capacity=3)
    for index in range(5):
        store.put(StoredFrame(index, np.full((2, 2, 3), index, np.uint8), 0.0))
    assert store.overflowed == 2
    frame, fresh = store.take(3)
    assert fresh and frame is not None and frame.index == 3
    frame, fresh = store.take(7)  # nothing rendered for 7 yet: newest older frame, not fresh
    assert not fresh and frame is not None and frame.index == 4
    store.put(StoredFrame(9, np.zeros((2, 2, 3), np.uint8), 0.0))
    store.drop_after(8)
    frame, fresh = store.take(9)
    assert not fresh and frame is not None and frame.index == 4


def test_session_clock_keeps_audio_and_video_on_one_timeline() -> None:
    clock = SessionClock(origin=100.0, fps=30, playout_delay_s=0.1)
    # 30 fps does not divide 48 kHz samples evenly per frame; positions stay exact over time.
    assert clock.sample_position(30 * 600) == 48000 * 600
    for index in (0, 7, 1234, 30 * 600):
        position = index * 48000 // 30
        assert clock.frame_due(index) == pytest.approx(clock.sample_due(position), abs=1 / 48000)
    assert clock.frame_index_at(clock.frame_due(42) + 1e-6) == 42


def test_underrun_debt_is_paid_back_from_pauses_never_from_speech() -> None:
    queue = _queue(jitter=960)
    stream = Utterance("websocket", streaming=True)
    queue.add(stream)
    loud = np.full(960, 0.3, dtype=np.float32)
    queue.push(stream, loud)
    queue.take(960)
    queue.take(1920)  # nothing arrived: 40 ms of silence padded, the stream is now late
    assert stream.debt_samples == 1920
    # The sender catches up in a burst: speech, a pause, speech.
    queue.push(stream, loud)
    queue.push(stream, np.zeros(4800, dtype=np.float32))
    queue.push(stream, loud)
    first = queue.take(960)
    assert np.array_equal(first.playback, loud) and stream.skipped_samples == 0  # speech kept
    rest = queue.take(3840)
    assert stream.skipped_samples == 1920 and stream.debt_samples == 0 and not rest.underrun
    # The pause shrank by exactly the debt; the speech after it comes 40 ms earlier.
    assert np.count_nonzero(rest.playback) == 960
    assert rest.playback[2880:].min() == pytest.approx(0.3)


def test_frame_store_never_leaves_a_new_viewer_without_a_frame() -> None:
    store = FrameStore(capacity=2)
    for index in (10, 11, 12):  # the first frames were evicted before anyone looked
        store.put(StoredFrame(index, np.full((2, 2, 3), index, np.uint8), 0.0))
    frame, fresh = store.take(5)
    assert frame is not None and frame.index == 11 and not fresh
    frame, fresh = store.take(11)
    assert frame is not None and frame.index == 11 and fresh


def test_a_whole_utterance_too_big_to_fit_is_refused_and_not_queued() -> None:
    queue = _queue(max_s=0.1)
    too_long = Utterance("upload", streaming=False)
    with pytest.raises(
        SpeechQueueFullError, match=r"full: 0\.2 s of audio does not fit \(0\.1 s free"
    ):
        queue.add(too_long, _ramp(9600))
    assert queue.utterances == () and not queue.take(960).started


def test_a_stalled_stream_ends_after_the_gap_and_lets_later_speech_play() -> None:
    now = [0.0]
    queue = SpeechQueue(int(10 * RATE), 960, stream_gap_s=2.0, clock=lambda: now[0])
    stalled = Utterance("websocket", streaming=True)
    queue.add(stalled)
    queue.push(stalled, _ramp(480))  # under the jitter buffer, and then nothing more
    later = Utterance("tts", streaming=False)
    queue.add(later, _ramp(960, 5000))
    now[0] = 1.9
    assert not queue.take(1920).started  # still within the gap: the stream may go on
    now[0] = 2.1
    taken = queue.take(1920)
    assert stalled.ended
    assert [u.id for u, _ in taken.started] == [stalled.id, later.id]
    assert np.array_equal(taken.playback[:480], _ramp(480))
    assert np.array_equal(taken.playback[480:1440], _ramp(960, 5000))


def test_a_stream_waiting_with_audio_to_play_is_not_ended_by_the_gap() -> None:
    now = [0.0]
    queue = SpeechQueue(int(10 * RATE), 960, stream_gap_s=2.0, clock=lambda: now[0])
    stream = Utterance("websocket", streaming=True)
    queue.add(stream)
    queue.push(stream, _ramp(48000))  # a full second queued: it is playing, not starving
    now[0] = 5.0
    queue.take(1920)
    assert not stream.ended
