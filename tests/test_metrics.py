"""The /metrics registry: exposition format, values, quantiles, escaping, removal, threads."""

from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from server.metrics import MetricsRegistry, ServerMetrics

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)\Z")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|\Z)')
_SUFFIXES = {"counter": ("",), "gauge": ("",), "summary": ("", "_sum", "_count")}


@dataclass
class Family:
    help: str
    type: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def _parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LABEL.match(text, position)
        assert match, f"bad label set {text!r} at {position}"
        assert match.group(1) not in labels, f"duplicate label in {text!r}"
        labels[match.group(1)] = _unescape(match.group(2))
        position = match.end()
    return labels


def parse(text: str) -> dict[str, Family]:
    """Parse exposition text strictly: HELP, then TYPE, then that family's samples."""
    assert text.endswith("\n")
    families: dict[str, Family] = {}
    current: str | None = None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert name not in families, f"{name} declared twice"
            families[name] = Family(_unescape(help_text))
            current = name
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current and not families[name].type, f"TYPE out of place: {line}"
            assert kind in _SUFFIXES
            families[name].type = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            assert current is not None and families[current].type, f"sample before TYPE: {line}"
            family = families[current]
            assert match.group(1) in {current + s for s in _SUFFIXES[family.type]}, line
            labels = _parse_labels(match.group(2) or "")
            family.samples.append((match.group(1), labels, float(match.group(3))))
    return families


def _value(families: dict[str, Family], sample: str, **labels: str) -> float:
    for family in families.values():
        for name, sample_labels, value in family.samples:
            if name == sample and sample_labels == labels:
                return value
    raise KeyError(f"{sample}{labels}")


def test_counters_and_gauges_render_their_values() -> None:
    registry = MetricsRegistry()
    requests = registry.counter("requests_total", "Requests served.")
    temperature = registry.gauge("temperature_celsius", "Current temperature.")
    requests.inc()
    requests.inc(2.5)
    requests.inc(4, path="/a")
    temperature.set(20.0, room="lab")
    temperature.inc(3, room="lab")
    temperature.dec(0.5, room="lab")
    families = parse(registry.render())
    assert families["requests_total"].type == "counter"
    assert families["requests_total"].help == "Requests served."
    assert families["temperature_celsius"].type == "gauge"
    assert _value(families, "requests_total") == 3.5
    assert _value(families, "requests_total", path="/a") == 4.0
    assert _value(families, "temperature_celsius", room="lab") == 22.5
    assert requests.value() == 3.5 and requests.value(path="/a") == 4.0
    assert requests.value(path="/never") == 0.0
    with pytest.raises(ValueError):
        requests.inc(-1)


def test_metrics_without_series_render_zero_and_order_is_deterministic() -> None:
    def build(names: list[str]) -> str:
        registry = MetricsRegistry()
        for name in names:
            registry.counter(name, "help")
        registry.summary("latency_seconds", "Latency.")
        return registry.render()

    text = build(["b_total", "a_total", "c_total"])
    assert text == build(["c_total", "b_total", "a_total"])
    families = parse(text)
    assert list(families) == ["a_total", "b_total", "c_total", "latency_seconds"]
    assert _value(families, "a_total") == 0.0
    assert _value(families, "latency_seconds_count") == 0.0
    assert np.isnan(_value(families, "latency_seconds", quantile="0.95"))


def test_series_render_in_label_order_whatever_the_update_order() -> None:
    registry = MetricsRegistry()
    counter = registry.counter("by_worker_total", "By worker.")
    summary = registry.summary("by_worker_seconds", "By worker.", quantiles=(0.5,))
    for worker in ("w3", "w1", "w2"):
        counter.inc(worker=worker, kind="b")
        counter.inc(kind="a", worker=worker)
        summary.observe(1.0, worker=worker)
    families = parse(registry.render())
    labels = [tuple(sorted(found.items())) for _, found, _ in families["by_worker_total"].samples]
    assert labels == sorted(labels) and len(labels) == 6
    workers = [
        found["worker"]
        for n, found, _ in families["by_worker_seconds"].samples
        if n.endswith("_sum")
    ]
    assert workers == ["w1", "w2", "w3"]


def test_summary_quantiles_match_numpy_over_the_sliding_window() -> None:
    rng = np.random.default_rng(7)
    data = rng.lognormal(size=3000)
    registry = MetricsRegistry()
    summary = registry.summary("work_seconds", "Work.", quantiles=(0.0, 0.5, 0.9, 0.95, 1.0))
    assert summary.quantile(0.5) is None
    for value in data:
        summary.observe(float(value))
    recent = data[-1024:]
    families = parse(registry.render())
    assert families["work_seconds"].type == "summary"
    for q in (0.0, 0.5, 0.9, 0.95, 1.0):
        expected = np.percentile(recent, q * 100)
        assert summary.quantile(q) == pytest.approx(expected, rel=1e-12)
        assert _value(families, "work_seconds", quantile=repr(q)) == pytest.approx(expected)
    for q in (0.01, 0.33, 0.77):
        assert summary.quantile(q) == pytest.approx(np.percentile(recent, q * 100), rel=1e-12)
    assert _value(families, "work_seconds_count") == 3000
    assert _value(families, "work_seconds_sum") == pytest.approx(data.sum())


def test_summary_windows_are_per_label_set_and_small_windows_work() -> None:
    registry = MetricsRegistry()
    summary = registry.summary("s", "S.", window=3)
    for value in (100.0, 1.0, 2.0, 3.0):
        summary.observe(value, stage="a")
    summary.observe(7.0, stage="b")
    assert summary.quantile(0.5, stage="a") == 2.0
    assert summary.quantile(1.0, stage="a") == 3.0
    assert summary.quantile(0.5, stage="b") == 7.0
    assert summary.quantile(0.5) is None
    families = parse(registry.render())
    assert _value(families, "s_sum", stage="a") == 106.0
    assert _value(families, "s_count", stage="a") == 4.0
    assert _value(families, "s", stage="b", quantile="0.95") == 7.0
    with pytest.raises(ValueError):
        summary.observe(1.0, quantile="x")
    with pytest.raises(ValueError):
        registry.summary("bad_q", "B.", quantiles=(1.5,))
    with pytest.raises(ValueError):
        summary.quantile(1.01, stage="a")


def test_label_values_and_help_are_escaped() -> None:
    registry = MetricsRegistry()
    nasty = 'back\\slash "quoted"\nnext line'
    counter = registry.counter("escaped_total", 'Help with \\ and\nnewline and "quotes".')
    counter.inc(session=nasty)
    text = registry.render()
    assert 'session="back\\\\slash \\"quoted\\"\\nnext line"' in text
    assert len(text.splitlines()) == 3
    families = parse(text)
    assert families["escaped_total"].help == 'Help with \\ and\nnewline and "quotes".'
    assert _value(families, "escaped_total", session=nasty) == 1.0


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "é", "ok\n"])
def test_invalid_metric_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        MetricsRegistry().counter(name, "help")


def test_invalid_label_names_and_duplicate_metrics_are_rejected() -> None:
    registry = MetricsRegistry()
    counter = registry.counter("ns:sub_total", "Colons are valid in metric names.")
    for bad in ({"a:b": "x"}, {"__reserved": "x"}, {"1a": "x"}):
        with pytest.raises(ValueError):
            counter.inc(**bad)
    with pytest.raises(ValueError):
        registry.gauge("ns:sub_total", "Same name again.")


def test_remove_labels_drops_every_series_of_a_session() -> None:
    registry = MetricsRegistry()
    frames = registry.counter("frames_total", "Frames.")
    lag = registry.gauge("lag_seconds", "Lag.")
    render = registry.summary("render_seconds", "Render.")
    for session in ("s1", "s2"):
        frames.inc(session=session, kind="video")
        lag.set(0.1, session=session)
        render.observe(0.02, session=session)
    frames.inc(kind="video")
    registry.remove_labels(session="s1")
    text = registry.render()
    assert 's1"' not in text
    families = parse(text)
    assert _value(families, "frames_total", session="s2", kind="video") == 1.0
    assert _value(families, "frames_total", kind="video") == 1.0
    assert _value(families, "lag_seconds", session="s2") == pytest.approx(0.1)
    assert _value(families, "render_seconds_count", session="s2") == 1.0
    assert render.quantile(0.5, session="s1") is None
    registry.remove_labels(session="s2", kind="audio")  # no series has both: nothing goes
    assert frames.value(session="s2", kind="video") == 1.0
    with pytest.raises(ValueError):
        registry.remove_labels()


def test_concurrent_updates_are_exact_and_scrapes_never_fail() -> None:
    registry = MetricsRegistry()
    counter = registry.counter("hits_total", "Hits.")
    summary = registry.summary("obs", "Observations.", window=64)
    threads_n, per_thread = 8, 10_000
    barrier = threading.Barrier(threads_n + 1)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            counter.inc()
            if i % 10 == 0:
                summary.observe(float(i), worker=str(index), slot=str(i % 50))

    def scrape() -> None:
        barrier.wait()
        try:
            while any(t.is_alive() for t in workers):
                parse(registry.render())
        except BaseException as error:  # re-raised below in the test thread
            errors.append(error)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
    scraper = threading.Thread(target=scrape)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so a missing lock shows up
    try:
        for thread in [*workers, scraper]:
            thread.start()
        for thread in [*workers, scraper]:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    assert counter.value() == threads_n * per_thread
    families = parse(registry.render())
    counts = [v for n, _, v in families["obs"].samples if n == "obs_count"]
    assert sum(counts) == threads_n * per_thread // 10


def test_gauge_callback_is_read_at_scrape_time() -> None:
    registry = MetricsRegistry()
    queue: list[int] = []
    depth = registry.gauge("queue_depth", "Items queued.", fn=lambda: len(queue))
    assert _value(parse(registry.render()), "queue_depth") == 0.0
    queue.extend([1, 2, 3])
    assert _value(parse(registry.render()), "queue_depth") == 3.0
    assert depth.value() == 3.0
    with pytest.raises(TypeError):
        depth.set(1.0)


_SERVER_METRICS = {
    "facecast_sessions_active": "gauge",
    "facecast_sessions_created_total": "counter",
    "facecast_sessions_rejected_total": "counter",
    "facecast_frames_sent_total": "counter",
    "facecast_frames_dropped_total": "counter",
    "facecast_frame_time_seconds": "summary",
    "facecast_audio_to_frame_seconds": "summary",
    "facecast_first_frame_seconds": "summary",
    "facecast_audio_underruns_total": "counter",
    "facecast_utterances_total": "counter",
    "facecast_interrupts_total": "counter",
}


def test_server_metrics_render_every_name() -> None:
    sessions = ["a", "b"]
    metrics = ServerMetrics(sessions_active=lambda: len(sessions))
    metrics.sessions_created.inc()
    metrics.frames_sent.inc()
    metrics.frames_dropped.inc(3, reason="overload")
    metrics.utterances.inc(source="tts")
    for seconds in (0.01, 0.02, 0.03):
        metrics.frame_time_seconds.observe(seconds)
    families = parse(metrics.render())
    assert {name: family.type for name, family in families.items()} == _SERVER_METRICS
    assert _value(families, "facecast_sessions_active") == 2.0
    assert _value(families, "facecast_frames_dropped_total", reason="overload") == 3.0
    assert _value(families, "facecast_frames_dropped_total", reason="late") == 0.0
    assert _value(families, "facecast_utterances_total", source="tts") == 1.0
    assert _value(families, "facecast_utterances_total", source="microphone") == 0.0
    assert _value(families, "facecast_frame_time_seconds", quantile="0.5") == 0.02
    assert _value(families, "facecast_frame_time_seconds_count") == 3.0
    sessions.clear()
    assert _value(parse(metrics.render()), "facecast_sessions_active") == 0.0
