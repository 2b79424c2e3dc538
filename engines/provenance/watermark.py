"""Invisible provenance mark: a 64-bit payload spread over luma at coarse scale, found by search.

Embedding (every rendered frame, after render and before encode)::

    key --PRNG--> sign c_i for each of the 64x64 chip positions of a tile
    payload --CRC-16 + (171,133) conv code--> 172 coded bits b_j
    chip amplitude a_i = gain_i * strength * c_i            (sync positions)
                       = gain_i * strength * c_i * (1-2b_j) (payload positions of bit j)
    128 x 128 chip grid (2 x 2 tiles) --bilinear--> H x W luma delta, added to R, G and B

A chip is 1/128 of the frame width (4 px at 512), so the mark lives at periods
of 8 px and more: it survives a 512 -> 256 downscale (2 px chips) and the
quantisation of H.264/VP8 at session bitrates. (8 px chips were measured too:
half the statistic, because the portrait itself is the main noise and it has
more power at coarse scales; bench_watermark.md.)
Adding the same delta to R, G and B changes luma only. `gain_i` is
perceptual masking: chips over texture get up to 2x, flat chips (skin, sky)
0.6x, normalised so the mean power stays at `strength` (PSNR >= 42 dB).

Detection (`WatermarkDetector`) averages the luma of many frames (the mark is
the same in every frame, the codec noise is not), then for each scale
hypothesis (the frame is a crop covering 86-100% of the original width, at
any size; 49 scales) resamples to 4 px per chip, removes the host with a
high-pass and a local-energy weight, matched-filters the chip shape, folds
the image modulo one tile (a crop is a cyclic shift of the tiling) and
correlates with the sync signs at every one of the 256 x 256 shifts by FFT.
A crop of a few percent is a shift of a few chips; a tile (half the frame)
is far larger than any such crop.

Calibrated confidence, derived not tuned: for content that does not carry
this key's mark, the chip values x_i are independent of the key's random
signs c_i, so at one hypothesis S = sum c_i x_i is a Rademacher sum and
Hoeffding's inequality gives P(S / sqrt(sum x_i^2) >= z) <= exp(-z^2 / 2)
exactly, whatever the content. The detector tests H = scales x shifts
hypotheses and reports p = min(1, H exp(-z_max^2 / 2)) (Bonferroni); a video
is "marked" when p <= `false_positive_rate` (1e-6 per video by default, so
z_max >= 7.6 with its 3.2 M hypotheses). The payload is then read at the winning hypothesis, soft-
decoded, and reported only if its CRC matches.

Keys: every sign and role above derives from the key. With the public
DEFAULT_KEY anyone can verify a video, and anyone can also locate the mark; with
a deployment's private key only holders of the key can. For any other key the
signs are independent of the mark, so the null above holds and a wrong key finds
nothing. Testing K keys on one video (`results`) shares the host removal and
the folding, and multiplies H by K, so the per-video bound stays the same.

Why not `invisible-watermark` (DWT-DCT, the package Stable Diffusion uses):
it cannot be installed into this venv without breaking pins (it requires
opencv-python, whose current wheel pulls numpy 2, and mediapipe 0.10.21
needs numpy < 2). Measured from a side directory (--no-deps) on the same
10 s render, 64 bits, majority vote over frames: dwtDct reads 59% of the bits
of the unprocessed built-in portrait (it fails on the dark background),
dwtDctSvd survives live H.264 and CRF 28 (100%) but not a 512 -> 256
downscale (48%) or a 4% crop (55%), at 24 and 60 ms per frame and ~41 dB
PSNR; it has no detection statistic, so no false-positive control. This
design is ~0.5-0.9 ms per frame idle (more under load), 43 dB, searches crops
and scales, and reports a p-value (benchmarks/results/bench_watermark.md).
Known gap: on a highly textured portrait (skimage astronaut) the chained
live H.264 -> CRF 28 and live H.264 -> 256 paths fall to z ~5-7.5, under the
7.6 threshold: the host's own texture, not the codec, is the main noise.

Frames are (H, W, 3) uint8 RGB; luma frames are (H, W) uint8 or float.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import code

__all__ = [
    "DEFAULT_KEY",
    "Detection",
    "WatermarkConfig",
    "WatermarkDetector",
    "WatermarkEmbedder",
    "detect",
    "key_kind",
    "make_payload",
    "split_payload",
]

# The public verification key: anyone can check a facecast video (that is the
# point of the mark); a deployment may set its own, private one (then only holders
# of that key can find the mark).
DEFAULT_KEY = b"facecast-provenance-v1"
GRID = 128  # chips across the frame width
TILE = GRID // 2  # chips per tile side: the frame holds 2 x 2 tiles
_CHIP_PX = 4  # detection resolution: pixels per chip
_SYNC_POSITIONS = TILE * TILE // 4  # 1024 of the 4096 positions; the rest carry coded bits
INSTANCE_BITS = 24
SESSION_BITS = code.PAYLOAD_BITS - INSTANCE_BITS


def make_payload(instance_id: int, session_id: int) -> int:
    """64-bit payload: 24 bits of instance id (high) and 40 bits of session or job id."""
    if not 0 <= instance_id < 1 << INSTANCE_BITS:
        raise ValueError(f"instance_id must fit in {INSTANCE_BITS} bits, got {instance_id}")
    if not 0 <= session_id < 1 << SESSION_BITS:
        raise ValueError(f"session_id must fit in {SESSION_BITS} bits, got {session_id}")
    return (instance_id << SESSION_BITS) | session_id


def split_payload(payload: int) -> tuple[int, int]:
    """(instance_id, session_id) of a payload made by make_payload."""
    return payload >> SESSION_BITS, payload & ((1 << SESSION_BITS) - 1)


@dataclass(frozen=True)
class WatermarkConfig:
    """key: the secret the chip signs and layout derive from (DEFAULT_KEY, public, unless a
    deployment sets its own; never in reprs or logs); strength: RMS chip amplitude in
    8-bit levels before masking and interpolation (2.6 gives ~43 dB PSNR on portraits);
    false_positive_rate: the per-video bound on calling unmarked content marked, over
    every key tried; min_crop_fraction: the smallest share of the original width a
    cropped video may keep and still be searched."""

    key: bytes = field(default=DEFAULT_KEY, repr=False)
    strength: float = 2.6
    false_positive_rate: float = 1e-6
    min_crop_fraction: float = 0.86

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes):
            raise TypeError(f"the watermark key is bytes, got {type(self.key).__name__}")
        if not self.key.strip():
            raise ValueError(
                "the watermark key is empty: give a long random one (`openssl rand -hex 32`), "
                "or none for the public key"
            )
        if not 0 < self.strength <= 8:
            raise ValueError(f"strength must be in (0, 8] levels, got {self.strength}")
        if not 0 < self.false_positive_rate < 1:
            raise ValueError(
                f"false_positive_rate must be in (0, 1), got {self.false_positive_rate}"
            )
        if not 0.5 <= self.min_crop_fraction <= 1:
            raise ValueError(f"min_crop_fraction must be in [0.5, 1], got {self.min_crop_fraction}")

    @property
    def key_kind(self) -> str:
        """'public' for DEFAULT_KEY (anyone can verify), 'private' for a deployment's own:
        what health and verify reports say instead of the key."""
        return key_kind(self.key)


def key_kind(key: bytes) -> str:
    """'public' or 'private': a key as reports may name it."""
    return "public" if key == DEFAULT_KEY else "private"


class _Layout:
    """The key's chip signs and roles over one tile (TILE x TILE positions); read-only,
    shared by every embedder and detector of the key (_layout)."""

    def __init__(self, key: bytes) -> None:
        seed = int.from_bytes(hashlib.sha256(b"facecast-wm|" + key).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        positions = TILE * TILE
        self.signs = rng.choice(np.array([-1.0, 1.0]), positions)  # (1024,) c_i
        order = rng.permutation(positions)
        self.sync = np.zeros(positions, dtype=bool)
        self.sync[order[:_SYNC_POSITIONS]] = True
        self.bit_of = np.full(positions, -1, dtype=np.int64)  # coded bit carried, -1 = sync
        payload_positions = order[_SYNC_POSITIONS:]
        self.bit_of[payload_positions] = np.arange(len(payload_positions)) % code.CODED_BITS
        for array in (self.signs, self.sync, self.bit_of):
            array.setflags(write=False)


@functools.lru_cache(maxsize=8)
def _layout(key: bytes) -> _Layout:
    """The key's layout, made once per key: every session's embedder and every verify reuse it."""
    return _Layout(key)


@functools.lru_cache(maxsize=8)
def _sync_spectra(key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """rfft2 of the key's sync signs and of its sync mask as impulses at chip centres over one
    tile at detection resolution: (256, 129) complex each, read-only, made once per key."""
    layout = _layout(key)
    side = TILE * _CHIP_PX
    signs = np.zeros((side, side), np.float32)
    mask = np.zeros((side, side), np.float32)
    centre = _CHIP_PX // 2 - 1  # bilinear chip i is centred at 4i + 1.5: sample at 4i + 1
    rows, cols = np.divmod(np.arange(TILE * TILE), TILE)
    sync = layout.sync
    ys, xs = rows[sync] * _CHIP_PX + centre, cols[sync] * _CHIP_PX + centre
    signs[ys, xs] = layout.signs[sync]
    mask[ys, xs] = 1.0
    spectra = np.fft.rfft2(signs), np.fft.rfft2(mask)
    for spectrum in spectra:
        spectrum.setflags(write=False)
    return spectra


def _tile_to_grid(tile: np.ndarray, rows: int) -> np.ndarray:
    """(TILE*TILE,) chip values -> (rows, GRID) chip grid, the tile repeated."""
    square = tile.reshape(TILE, TILE)
    reps = (math.ceil(rows / TILE), GRID // TILE)
    return np.tile(square, reps)[:rows]


class WatermarkEmbedder:
    """Adds one payload's mark to frames; make one per session or job (it caches the pattern
    and its work buffers, so one embedder serves one thread at a time).

    embed() costs about 0.6 ms per 512x512 frame on one idle thread; beside the renderer
    (bench_watermark.md, one run) more, as the renderer's work evicts the caches.
    """

    def __init__(self, payload: int, config: WatermarkConfig | None = None) -> None:
        self.config = config or WatermarkConfig()
        self.payload = payload
        layout = _layout(self.config.key)
        coded = code.encode(payload).astype(np.float64)
        chips = layout.signs.copy()
        carried = layout.bit_of >= 0
        chips[carried] *= 1.0 - 2.0 * coded[layout.bit_of[carried]]
        self._tile = chips.astype(np.float32)  # (1024,) +-1
        self._grids: dict[tuple[int, int], np.ndarray] = {}
        self._buffers: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}

    def _grid(self, height: int, width: int) -> np.ndarray:
        rows = max(1, round(height * GRID / width))
        grid = self._grids.get((rows, GRID))
        if grid is None:
            grid = np.ascontiguousarray(_tile_to_grid(self._tile, rows))
            self._grids[(rows, GRID)] = grid
        return grid

    def _gain(self, rgb: np.ndarray, rows: int) -> np.ndarray:
        """(rows, GRID) masking gain from local texture, mean square 1."""
        # extractChannel packs the plane in one pass; resize would copy the strided view.
        green = cv2.resize(cv2.extractChannel(rgb, 1), (GRID, rows), interpolation=cv2.INTER_AREA)
        small = green.astype(np.float32)  # one value per chip
        activity = cv2.blur(np.abs(small - cv2.blur(small, (3, 3))), (3, 3))
        gain = np.clip(0.6 + activity / 4.0, 0.6, 2.0)
        return gain / np.sqrt(np.mean(gain * gain))

    def embed(self, rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The frame with the mark added: (H, W, 3) uint8 in, (H, W, 3) uint8 out, new unless
        `out` is given (C-contiguous; it may be `rgb` itself, to mark in place)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"embed takes (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        if out is not None and (
            out.shape != rgb.shape or out.dtype != np.uint8 or not out.flags.c_contiguous
        ):
            raise ValueError(f"out must be C-contiguous {rgb.shape} uint8, got {out.shape}")
        height, width = rgb.shape[:2]
        grid = self._grid(height, width)
        amplitude = grid * (self.config.strength * self._gain(rgb, grid.shape[0]))
        delta, up, down, up3, down3 = self._scratch(height, width)
        cv2.resize(amplitude, (width, height), dst=delta, interpolation=cv2.INTER_LINEAR)
        # Saturating uint8 add and subtract of the rounded |delta|: a quarter of the memory
        # traffic of a float add over three channels. Into reused buffers: fresh ones cost
        # 3x as much when the allocator hands the pages back between frames.
        # |delta| rounded once, then split by its sign: one float pass less than
        # rounding the positive and the negative parts apart.
        cv2.convertScaleAbs(delta, dst=down)
        # (OpenCV's type stubs lack compare's scalar form.)
        positive = cv2.compare(delta, 0.0, cv2.CMP_GT, dst=up)  # type: ignore[call-overload]
        cv2.bitwise_and(down, positive, dst=up)
        cv2.subtract(down, up, dst=down)
        marked = cv2.add(rgb, cv2.merge([up, up, up], dst=up3), dst=out)
        return cv2.subtract(marked, cv2.merge([down, down, down], dst=down3), dst=marked)

    def _scratch(self, height: int, width: int) -> tuple[np.ndarray, ...]:
        """Per-size work buffers: (H, W) float32, (H, W) uint8 x2, (H, W, 3) uint8 x2."""
        buffers = self._buffers.get((height, width))
        if buffers is None:
            plane, colour = (height, width), (height, width, 3)
            buffers = (
                np.empty(plane, np.float32),
                np.empty(plane, np.uint8),
                np.empty(plane, np.uint8),
                np.empty(colour, np.uint8),
                np.empty(colour, np.uint8),
            )
            self._buffers[(height, width)] = buffers
        return buffers

    def embed_batch(self, frames: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, H, W, 3) uint8, each frame marked."""
        return np.stack([self.embed(frame) for frame in frames])


@dataclass(frozen=True)
class Detection:
    """What a video says: marked (p_value <= the configured rate), the payload when its
    CRC matched (None otherwise), the statistic and where the mark was found."""

    marked: bool
    payload: int | None
    p_value: float
    z: float
    frames: int
    hypotheses: int
    crop_fraction: float
    shift: tuple[int, int]
    bit_margin: float  # mean |soft coded bit| / its noise: > ~1.5 reads reliably

    @property
    def confidence(self) -> float:
        return 1.0 - self.p_value


def _luma(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame.astype(np.float32)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY).astype(np.float32)
    raise ValueError(f"frames must be (H, W) luma or (H, W, 3) RGB, got {frame.shape}")


def _whitened(small: np.ndarray) -> np.ndarray:
    """Chip-matched host residual at 4 px per chip, each chip weighted by 1 / local energy.

    The host (the portrait) is the mark's main noise and is the same in every
    frame: a high-pass removes its smooth part, the tent filter matches the chip
    shape, and dividing by the local RMS lets flat regions, where the host is
    quiet, count more than texture (a weight that depends on the content only,
    so the null distribution below still holds).
    """
    residual = small - cv2.GaussianBlur(small, (0, 0), _CHIP_PX)
    matched = cv2.sepFilter2D(residual, -1, _TENT, _TENT, borderType=cv2.BORDER_REFLECT)
    energy = cv2.GaussianBlur(matched * matched, (0, 0), 1.5 * _CHIP_PX)
    return matched / (np.sqrt(energy) + 0.3)


def _tent_kernel() -> np.ndarray:
    """The chip shape at detection resolution: bilinear interpolation's tent, 2 chips wide."""
    half = np.arange(-_CHIP_PX + 1, _CHIP_PX) / _CHIP_PX
    tent = 1.0 - np.abs(half)
    return (tent / tent.sum()).astype(np.float32)


_TENT = _tent_kernel()


class WatermarkDetector:
    """Accumulates frames of one video, then `result()` tests for the key's mark, or
    `results(keys)` for several keys' marks at little more than the cost of one.

    add() takes (H, W) luma or (H, W, 3) RGB frames of any size; all of one video
    must share one size.
    """

    def __init__(self, config: WatermarkConfig | None = None) -> None:
        self.config = config or WatermarkConfig()
        self._sum: np.ndarray | None = None
        self.frames = 0
        fractions = self._fractions()
        self.hypotheses = len(fractions) * (TILE * _CHIP_PX) ** 2  # per key tried
        self._fractions_list = fractions

    def _fractions(self) -> list[float]:
        # Scale step: a mismatch of d shifts the farthest chip by 256 * d canonical px; keep it
        # under 1.5 px (a fifth of the tent) -> d <= 0.006.
        low = self.config.min_crop_fraction
        step = 1.5 / (GRID * _CHIP_PX)
        count = max(1, math.ceil((1.0 - low) / step) + 1)
        return [float(v) for v in np.linspace(1.0, low, count)]

    def add(self, frame: np.ndarray) -> None:
        luma = _luma(frame)
        if self._sum is None:
            self._sum = np.zeros_like(luma, dtype=np.float64)
        elif luma.shape != self._sum.shape:
            raise ValueError(
                f"frame size changed within a video: {luma.shape} vs {self._sum.shape}"
            )
        self._sum += luma
        self.frames += 1

    def _folded(self, mean: np.ndarray, fraction: float) -> np.ndarray:
        """Host-removed, chip-matched luma at 4 px per chip, folded modulo one tile."""
        height, width = mean.shape
        scale = GRID * _CHIP_PX * fraction / width
        size = (max(8, round(width * scale)), max(8, round(height * scale)))
        small = cv2.resize(mean, size, interpolation=cv2.INTER_AREA)
        matched = _whitened(small)
        side = TILE * _CHIP_PX
        rows, cols = matched.shape
        padded = np.zeros(
            (math.ceil(rows / side) * side, math.ceil(cols / side) * side), np.float32
        )
        padded[:rows, :cols] = matched
        return padded.reshape(padded.shape[0] // side, side, -1, side).sum(axis=(0, 2))

    def result(self) -> Detection:
        """The test for the configured key's mark."""
        return self.results([self.config.key])[0]

    def results(self, keys: Sequence[bytes]) -> list[Detection]:
        """One Detection per key, in order, over the same frames. The host removal and the
        folding (most of the work) are done once for all keys; each p-value counts the
        hypotheses of every key tried (Bonferroni), so false_positive_rate stays the bound
        for the whole video however many keys are tried."""
        if self._sum is None or self.frames == 0:
            raise ValueError("no frames added: call add() with the video's frames first")
        if not keys:
            raise ValueError("no keys to test: give at least one")
        mean = (self._sum / self.frames).astype(np.float32)
        spectra = [_sync_spectra(key) for key in keys]
        best: list[tuple[float, float, tuple[int, int], np.ndarray | None]] = [
            (-math.inf, 1.0, (0, 0), None) for _ in keys
        ]
        for fraction in self._fractions_list:
            folded = self._folded(mean, fraction)
            spectrum, power = np.fft.rfft2(folded), np.fft.rfft2(folded * folded)
            for index, (signs, mask) in enumerate(spectra):
                z, shift = _statistic(spectrum, power, signs, mask, folded.shape[0])
                if z > best[index][0]:
                    best[index] = (z, fraction, shift, folded)
        hypotheses = self.hypotheses * len(keys)
        return [
            self._detection(key, z, fraction, shift, folded, hypotheses)
            for key, (z, fraction, shift, folded) in zip(keys, best, strict=True)
        ]

    def _detection(
        self,
        key: bytes,
        z: float,
        fraction: float,
        shift: tuple[int, int],
        folded: np.ndarray | None,
        hypotheses: int,
    ) -> Detection:
        assert folded is not None
        log_p = math.log(hypotheses) - z * z / 2 if z > 0 else 0.0
        p_value = min(1.0, math.exp(min(log_p, 0.0)))
        marked = p_value <= self.config.false_positive_rate
        soft = _soft_bits(_layout(key), folded, shift)
        payload = code.decode(soft) if marked else None
        return Detection(
            marked=marked,
            payload=payload,
            p_value=p_value,
            z=z,
            frames=self.frames,
            hypotheses=hypotheses,
            crop_fraction=fraction,
            shift=shift,
            bit_margin=float(np.mean(np.abs(soft))),
        )


def _statistic(
    spectrum: np.ndarray, power: np.ndarray, signs: np.ndarray, mask: np.ndarray, side: int
) -> tuple[float, tuple[int, int]]:
    """Max over cyclic shifts of S / sqrt(sum x^2) and the shift (dy, dx) where it is.

    spectrum, power: rfft2 of the folded tile x and of x^2; signs, mask: the key's
    _sync_spectra; all (side, side // 2 + 1) complex."""
    numerator = np.fft.irfft2(spectrum * np.conj(signs), (side, side))
    energy = np.fft.irfft2(power * np.conj(mask), (side, side))
    z = numerator / np.sqrt(np.maximum(energy, 1e-12))
    best = int(np.argmax(z))
    dy, dx = divmod(best, side)
    return float(z.flat[best]), (dy, dx)


def _soft_bits(layout: _Layout, folded: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """(CODED_BITS,) soft coded bits at a hypothesis, positive meaning coded 0."""
    side = folded.shape[0]
    rows, cols = np.divmod(np.arange(TILE * TILE), TILE)
    centre = _CHIP_PX // 2 - 1
    ys = (rows * _CHIP_PX + centre + shift[0]) % side
    xs = (cols * _CHIP_PX + centre + shift[1]) % side
    values = folded[ys, xs] * layout.signs
    carried = layout.bit_of >= 0
    soft = np.bincount(layout.bit_of[carried], values[carried], minlength=code.CODED_BITS)
    count = np.bincount(layout.bit_of[carried], minlength=code.CODED_BITS)
    noise = np.sqrt(np.mean(values[carried] ** 2) * count)
    return soft / np.maximum(noise, 1e-12)


def detect(
    frames: np.ndarray | list[np.ndarray], config: WatermarkConfig | None = None
) -> Detection:
    """Detection over a sequence of frames (luma or RGB) of one video."""
    detector = WatermarkDetector(config)
    for frame in frames:
        detector.add(frame)
    return detector.result()
