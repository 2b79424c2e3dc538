"""Counters, gauges and summaries for GET /metrics, in Prometheus text format 0.0.4.

Dependency-free on purpose: the server needs a dozen numbers, not prometheus_client.
Every metric guards its series with its own lock, because render worker threads and
the asyncio loop update them concurrently while a scrape reads them.

Summary quantiles use linear interpolation between the closest ranks of the sorted
window (numpy.percentile's default method), over the last `window` observations of
each label set; `_sum` and `_count` cover all time.

A metric with no series yet renders its unlabelled zero (a summary: NaN quantiles),
so every name is present from the first scrape.
"""

from __future__ import annotations

import collections
import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Counter", "Gauge", "Summary", "MetricsRegistry", "ServerMetrics"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_LabelKey = tuple[tuple[str, str], ...]  # sorted (label name, value) pairs
_Sample = tuple[str, _LabelKey, float]  # (sample name, labels, value)
_V = TypeVar("_V")  # what one series holds


def _label_key(labels: dict[str, str]) -> _LabelKey:
    for name in labels:
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(f"invalid label name {name!r}: use [a-zA-Z_][a-zA-Z0-9_]*, no '__'")
    return tuple(sorted((name, str(value)) for name, value in labels.items()))


def _escape(text: str, quote: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if quote else text


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _format_labels(key: _LabelKey) -> str:
    if not key:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value, True)}"' for name, value in key) + "}"


class _Metric(Generic[_V]):
    kind = "untyped"

    def __init__(self, name: str, help: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}: use [a-zA-Z_:][a-zA-Z0-9_:]*")
        self.name = name
        self.help = help
        self._lock = threading.Lock()
        self._series: dict[_LabelKey, _V] = {}

    def _remove(self, match: _LabelKey) -> None:
        wanted = set(match)
        with self._lock:
            for key in [key for key in self._series if wanted <= set(key)]:
                del self._series[key]

    def _samples(self) -> list[_Sample]:
        raise NotImplementedError

    def _render(self) -> list[str]:
        lines = [
            f"# HELP {self.name} {_escape(self.help, False)}",
            f"# TYPE {self.name} {self.kind}",
        ]
        lines += [f"{n}{_format_labels(k)} {_format_value(v)}" for n, k, v in self._samples()]
        return lines


class _Scalar(_Metric[float]):
    """One float per label set."""

    def _add(self, amount: float, labels: dict[str, str]) -> None:
        key = _label_key(labels)
        with self._lock:
            self._series[key] = self._series.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        key = _label_key(labels)
        with self._lock:
            return self._series.get(key, 0.0)

    def _samples(self) -> list[_Sample]:
        with self._lock:
            items = sorted(self._series.items()) or [((), 0.0)]
        return [(self.name, key, value) for key, value in items]


class Counter(_Scalar):
    """A total that only goes up."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease (inc by {amount}); use a Gauge")
        self._add(amount, labels)


class Gauge(_Scalar):
    """A value that goes up and down; with `fn`, read from the callable at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help: str, fn: Callable[[], float] | None = None) -> None:
        super().__init__(name, help)
        self._fn = fn

    def set(self, value: float, **labels: str) -> None:
        self._check_settable()
        key = _label_key(labels)
        with self._lock:
            self._series[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._check_settable()
        self._add(amount, labels)

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self._check_settable()
        self._add(-amount, labels)

    def value(self, **labels: str) -> float:
        if self._fn is None:
            return super().value(**labels)
        if labels:
            raise ValueError(f"gauge {self.name} reads a callback and has no labels")
        return float(self._fn())

    def _check_settable(self) -> None:
        if self._fn is not None:
            raise TypeError(f"gauge {self.name} reads its value from a callback; do not set it")

    def _samples(self) -> list[_Sample]:
        if self._fn is None:
            return super()._samples()
        return [(self.name, (), self.value())]


@dataclass
class _Window:
    """One label set of a summary: the recent window and all-time totals."""

    recent: collections.deque[float]
    total: float = 0.0
    count: int = 0


def _check_quantile(q: float) -> float:
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must lie in [0, 1], got {q}")
    return float(q)


def _interpolate(ordered: list[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Summary(_Metric[_Window]):
    """Quantiles over a sliding window of recent observations, plus all-time sum and count."""

    kind = "summary"

    def __init__(
        self, name: str, help: str, quantiles: Iterable[float] = (0.5, 0.95), window: int = 1024
    ) -> None:
        super().__init__(name, help)
        self.quantiles = tuple(_check_quantile(q) for q in quantiles)
        if window < 1:
            raise ValueError(f"summary {name}: window must be at least 1, got {window}")
        self.window = window

    def observe(self, value: float, **labels: str) -> None:
        if "quantile" in labels:
            raise ValueError(f"summary {self.name}: 'quantile' is a reserved label name")
        key = _label_key(labels)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Window(collections.deque(maxlen=self.window))
            series.recent.append(float(value))
            series.total += float(value)
            series.count += 1

    def quantile(self, q: float, **labels: str) -> float | None:
        q = _check_quantile(q)
        key = _label_key(labels)
        with self._lock:
            series = self._series.get(key)
            ordered = sorted(series.recent) if series is not None else []
        return _interpolate(ordered, q) if ordered else None

    def _samples(self) -> list[_Sample]:
        with self._lock:
            snapshot = [(k, sorted(s.recent), s.total, s.count) for k, s in self._series.items()]
        snapshot = sorted(snapshot, key=lambda item: item[0]) or [((), [], 0.0, 0)]
        samples: list[_Sample] = []
        for key, ordered, total, count in snapshot:
            for q in self.quantiles:
                value = _interpolate(ordered, q) if ordered else math.nan
                samples.append((self.name, (*key, ("quantile", repr(q))), value))
            samples.append((f"{self.name}_sum", key, total))
            samples.append((f"{self.name}_count", key, float(count)))
        return samples


_M = TypeVar("_M", bound="_Metric[Any]")


class MetricsRegistry:
    """Named metrics, rendered together in name order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric[Any]] = {}

    def counter(self, name: str, help: str) -> Counter:
        return self._register(Counter(name, help))

    def gauge(self, name: str, help: str, fn: Callable[[], float] | None = None) -> Gauge:
        return self._register(Gauge(name, help, fn=fn))

    def summary(
        self, name: str, help: str, quantiles: Iterable[float] = (0.5, 0.95), window: int = 1024
    ) -> Summary:
        return self._register(Summary(name, help, quantiles=quantiles, window=window))

    def _register(self, metric: _M) -> _M:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered; reuse that object")
            self._metrics[metric.name] = metric
        return metric

    def _snapshot(self) -> list[_Metric[Any]]:
        with self._lock:
            return [self._metrics[name] for name in sorted(self._metrics)]

    def render(self) -> str:
        lines = [line for metric in self._snapshot() for line in metric._render()]
        return "\n".join(lines) + "\n"

    def remove_labels(self, **labels: str) -> None:
        """Drop every series whose labels include all of these (e.g. session="s1")."""
        if not labels:
            raise ValueError("remove_labels needs at least one label; it would drop every series")
        match = _label_key(labels)
        for metric in self._snapshot():
            metric._remove(match)


_DROP_REASONS = ("late", "sender_behind")
_UTTERANCE_SOURCES = ("websocket", "upload", "tts", "microphone")


class ServerMetrics:
    """The facecast server's metrics, one object created at startup and passed explicitly."""

    def __init__(self, sessions_active: Callable[[], int]) -> None:
        r = self.registry = MetricsRegistry()
        self.sessions_active = r.gauge(
            "facecast_sessions_active", "Live sessions.", fn=sessions_active
        )
        self.sessions_created = r.counter("facecast_sessions_created_total", "Sessions started.")
        self.sessions_rejected = r.counter(
            "facecast_sessions_rejected_total", "Sessions refused because the cap was reached."
        )
        self.frames_sent = r.counter("facecast_frames_sent_total", "Video frames sent.")
        self.frames_dropped = r.counter(
            "facecast_frames_dropped_total",
            "Frames not shown: late (not rendered in time), sender_behind (skipped by a track).",
        )
        self.frame_time_seconds = r.summary(
            "facecast_frame_time_seconds", "Render time per frame in seconds."
        )
        self.audio_to_frame_seconds = r.summary(
            "facecast_audio_to_frame_seconds",
            "A tick's audio entering the pipeline -> its frame leaving for the encoder, s.",
        )
        self.first_frame_seconds = r.summary(
            "facecast_first_frame_seconds", "Session start request -> first frame ready to send, s."
        )
        self.audio_underruns = r.counter(
            "facecast_audio_underruns_total", "Ticks padded with silence in streamed speech."
        )
        self.utterances = r.counter("facecast_utterances_total", "Utterances queued, by source.")
        self.interrupts = r.counter("facecast_interrupts_total", "Speech interrupted (barge-in).")
        # Known label values start at zero, so rate() has a baseline before the first event.
        for reason in _DROP_REASONS:
            self.frames_dropped.inc(0.0, reason=reason)
        for source in _UTTERANCE_SOURCES:
            self.utterances.inc(0.0, source=source)

    def render(self) -> str:
        return self.registry.render()
