"""Phone timings -> motion-space mouth targets, with dominance-function coarticulation.

The training targets of the learned sampler's mouth (issue 4, data engine).
Each phone i (ARPAbet, stress stripped) has a target T_i[k] for every mouth
channel k (VISEME_TARGETS; a channel it does not name has target 0) and, per
channel group g(k), a dominance function (Cohen & Massaro 1993):

    D_ig(t) = alpha_ig * exp(-(d_i(t) / w_ig) ** c)
    d_i(t)  = max(0, |t - centre_i| - h_i),   h_i = plateau_fraction * duration_i / 2

with w_ig the anticipatory width before the centre and the carry-over width
after it. Every channel is the normalized weighted sum

    y_k(t) = (sum_i D_ig(t) T_i[k] + b * R[k]) / (sum_i D_ig(t) + b)

where R = VISEME_TARGETS["SIL"] is the rest pose (lips lightly together) and b
a tiny background weight, so that far from every phone the mouth rests
instead of dividing 0 by 0.
Groups: jaw (jawOpen), close (mouthClose, mouthPress), round (funnel,
pucker), spread (stretch, smile), teeth (upperUp, lowerDown).

Why these choices:
- alpha per phone and group says how much a phone insists on a channel.
  Bilabials have alpha = closure_dominance (10) on jaw and close with a narrow
  width, so even a 50 ms /b/ between two /aa/ closes the lips at the frame
  nearest its centre; AH (schwa, and the stressed vowel of "but", which
  CMUdict spells alike once stress is stripped) has 0.7 so a schwa leans
  towards its neighbours' shape while a stressed AH still opens.
- The jaw's opening in speech is the vowels': during consonants the jaw is
  high, teeth nearly together for sibilants and alveolars (Keating et al.
  1994, "Variability in jaw height for segments in English and Swedish VCVs",
  J. Phonetics 22; Lindblom 1983), so consonant jawOpen targets are 0.02-0.06
  and the lips part and meet once per syllable. Earlier tables (0.1-0.15 on
  T, L, K) kept the mouth ajar through consonant clusters and made the gap
  follow loudness more than the vowels.
- Widths of 50 ms (vowels) and 35 ms (consonants) each side, beyond the
  plateau: a vowel reaches its target in the frame after a consonant and
  the jaw rises again for the next one, as in articulography at normal
  rates (a syllable every ~200 ms). The earlier 80 ms vowel widths smeared
  neighbouring vowels into one opening.
- c = 1.5 sits between Cohen & Massaro's cusp (c = 1, whose long tails let a
  strong closure pull the neighbouring vowels half shut) and a Gaussian
  (c = 2, which lets a 25 fps frame jump by more than half the jaw range).
- Consonants barely care about rounding (alpha 0.05-0.3 on round), so a
  rounded vowel's wide anticipatory width (round_anticipation_s) spreads its
  rounding through preceding consonants: "b l uw" rounds during the b.
- The plateau h makes a long phone hold its target instead of peaking at its
  centre; pauses (SIL) use a plateau reaching silence_edge_s from their edges,
  so the mouth relaxes to rest over ~silence_width_s after speech, never snaps
  and never stays open through a long pause. Gaps between phones, and time
  before the first and after the last, count as SIL.
- F/V: ARKit has no mouthRollLower (lower lip tucked under the upper
  teeth); its nearest expression here is the lower lip raised (mouthClose,
  partial, with mouthPress) plus mouthUpperUp showing the upper teeth.
- y(t) is a continuous function of time sampled at t = frame / fps, so
  targets at shared times agree exactly across frame rates and chunkings.

Only expression channels change; pose and gaze stay neutral (they come from
the prosody/head model). Output is clipped to motion_space ranges.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import SynthesisError
from ..motion import space as ms

__all__ = [
    "Phone",
    "VisemeConfig",
    "VISEME_TARGETS",
    "PHONES",
    "MOUTH_CHANNELS",
    "is_vowel",
    "phones_from_end_times",
    "parse_arpabet",
    "phone_targets",
]


@dataclass(frozen=True)
class Phone:
    """One phone: ARPAbet symbol without stress digits (or SIL), times in seconds."""

    symbol: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class VisemeConfig:
    """Amplitudes (target multipliers), dominance strengths, widths in seconds."""

    jaw_gain: float = 1.0  # scales every jawOpen target
    lip_gain: float = 1.0  # scales rounding, spreading and teeth targets
    closure_gain: float = 1.0  # scales mouthClose/mouthPress targets (rest included)
    shape_exponent: float = 1.5  # c; see the module docstring
    plateau_fraction: float = 0.3  # share of a phone's half-duration at full dominance
    vowel_width_s: tuple[float, float] = (0.05, 0.05)  # (anticipatory, carry-over)
    consonant_width_s: tuple[float, float] = (0.035, 0.035)
    closure_width_s: tuple[float, float] = (0.03, 0.03)  # bilabials, labiodentals
    round_anticipation_s: float = 0.15  # rounding of W/UW/OW/UH/OY reaches this far ahead
    closure_dominance: float = 10.0
    silence_width_s: float = 0.08
    silence_edge_s: float = 0.05
    background_dominance: float = 1e-4


# Short names of the mouth channels used by the tables; sided ones set both sides.
# fmt: off
_SHORT = {
    "jaw": "jawOpen", "close": "mouthClose", "press": "mouthPress",
    "funnel": "mouthFunnel", "pucker": "mouthPucker", "stretch": "mouthStretch",
    "smile": "mouthSmile", "upperUp": "mouthUpperUp", "lowerDown": "mouthLowerDown",
}
_GROUPS: dict[str, tuple[str, ...]] = {
    "jaw": ("jaw",), "close": ("close", "press"), "round": ("funnel", "pucker"),
    "spread": ("stretch", "smile"), "teeth": ("upperUp", "lowerDown"),
}
# fmt: on
_GROUP_NAMES = tuple(_GROUPS)


def _words(text: str) -> list[str]:
    return text.split()


# Phone classes: (phones, targets, dominance per group in _GROUPS order: jaw, close,
# round, spread, teeth). Channels not named have target 0.
# fmt: off
_CLASSES: tuple[tuple[str, str, tuple[float, ...]], ...] = (
    ("AA", "jaw=.7 lowerDown=.15", (1, 1, 0.6, 0.6, 0.5)),
    ("AE", "jaw=.6 stretch=.2 lowerDown=.15", (1, 1, 0.6, 0.8, 0.5)),
    ("AO", "jaw=.6 funnel=.25 pucker=.05", (1, 1, 1, 0.6, 0.5)),
    ("AW", "jaw=.55 funnel=.2 pucker=.1", (1, 1, 0.8, 0.6, 0.5)),
    ("AY", "jaw=.55 stretch=.1", (1, 1, 0.6, 0.6, 0.5)),
    ("EH", "jaw=.4 stretch=.15 smile=.05", (1, 1, 0.6, 0.8, 0.5)),
    ("AH", "jaw=.35", (0.7, 0.7, 0.4, 0.4, 0.3)),  # schwa (and stressed AH): half-yields
    ("ER", "jaw=.3 funnel=.2 pucker=.1", (0.6, 0.6, 0.6, 0.4, 0.4)),
    ("OW", "jaw=.35 funnel=.5 pucker=.3", (1, 1, 1.5, 1, 0.5)),
    ("OY", "jaw=.4 funnel=.35 pucker=.15", (1, 1, 1.2, 0.8, 0.5)),
    ("EY", "jaw=.3 stretch=.3 smile=.1", (1, 1, 0.6, 1, 0.5)),
    ("IH", "jaw=.2 stretch=.3 smile=.1", (1, 1, 0.6, 1, 0.5)),
    ("IY", "jaw=.12 stretch=.45 smile=.15", (1, 1, 0.8, 1.2, 0.5)),
    ("UH", "jaw=.22 funnel=.3 pucker=.3", (1, 1, 1.2, 1, 0.5)),
    ("UW", "jaw=.12 funnel=.35 pucker=.6", (1, 1, 1.5, 1, 0.5)),
    ("P B", "jaw=.03 close=.5 press=.4", (10, 10, 0.1, 0.3, 1)),
    ("M", "jaw=.03 close=.5 press=.25", (10, 10, 0.1, 0.3, 1)),
    ("F V", "jaw=.06 close=.3 press=.15 upperUp=.25", (3, 5, 0.1, 0.3, 3)),
    ("TH DH", "jaw=.06 lowerDown=.15", (1, 1, 0.1, 0.2, 1)),
    ("S Z", "jaw=.02 stretch=.3 smile=.08 upperUp=.1 lowerDown=.1", (1.5, 1, 0.2, 0.8, 1)),
    ("SH ZH CH JH", "jaw=.03 stretch=.15 funnel=.25 pucker=.1 upperUp=.15 lowerDown=.15",
     (1.5, 1, 0.8, 0.5, 1)),
    ("T D N", "jaw=.04", (0.6, 0.5, 0.05, 0.1, 0.3)),
    ("L", "jaw=.06", (0.5, 0.5, 0.05, 0.1, 0.3)),
    ("K G NG", "jaw=.06", (0.4, 0.5, 0.05, 0.1, 0.2)),
    ("HH", "jaw=.3", (0.05, 0.05, 0.05, 0.05, 0.05)),  # /h/ is the next vowel, breathy
    ("W", "jaw=.03 funnel=.3 pucker=.65", (0.6, 0.8, 2, 1, 0.3)),
    ("R", "jaw=.04 funnel=.25 pucker=.2", (0.5, 0.5, 1, 0.5, 0.3)),
    ("Y", "jaw=.03 stretch=.3 smile=.1", (0.5, 0.5, 0.5, 1, 0.3)),
    ("SIL", "close=.12 press=.06", (1, 1, 1, 1, 1)),  # rest: lips lightly together
)
# fmt: on

_VOWELS = frozenset(_words("AA AE AO AW AY EH AH ER OW OY EY IH IY UH UW"))
_CLOSURES = frozenset(_words("P B M F V"))
_ROUNDED = frozenset(_words("W UW OW UH OY"))  # rounding anticipated far ahead
PHONES: tuple[str, ...] = tuple(p for names, _, _ in _CLASSES for p in names.split())

# Timit/Festival/flite and aligner spellings -> the CMUdict set above.
_ALIASES = dict(
    pair.split("=")
    for pair in _words(
        "AX=AH AXR=ER IX=IH UX=UW DX=D EL=L EM=M EN=N NX=N Q=HH"
        " SP=SIL PAU=SIL H#=SIL SIL=SIL <SIL>=SIL SILENCE=SIL"
    )
)


def _expand(spec: str) -> Mapping[str, float]:
    """'jaw=.7 stretch=.2' -> {jawOpen: 0.7, mouthStretchLeft: 0.2, mouthStretchRight: 0.2}."""
    full: dict[str, float] = {}
    for item in spec.split():
        key, value = item.split("=")
        name = _SHORT[key]
        sides = (name,) if name in ms.EXPRESSION_NAMES else (name + "Left", name + "Right")
        for channel in sides:
            ms.index_of(channel)  # fail at import on a name outside the motion space
            full[channel] = float(value)
    return MappingProxyType(full)


VISEME_TARGETS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {p: _expand(t) for names, t, _ in _CLASSES for p in names.split()}
)
_DOMINANCE = {p: d for names, _, d in _CLASSES for p in names.split()}


def _channel_layout() -> tuple[tuple[str, ...], np.ndarray]:
    """Every mouth channel (both sides) and the index of its group in _GROUPS."""
    channels: list[str] = []
    groups: list[int] = []
    for g, names in enumerate(_GROUPS.values()):
        for channel in _expand(" ".join(f"{n}=0" for n in names)):
            channels.append(channel)
            groups.append(g)
    return tuple(channels), np.array(groups)


_CHANNELS, _CHANNEL_GROUP = _channel_layout()  # C channels; (C,) group index
_MOTION_INDEX = np.array([ms.index_of(ch) for ch in _CHANNELS])
# The motion-space channels phone_targets writes; every other channel stays neutral.
# tests/test_visemes.py checks that the table names exactly the motion space's mouth.
MOUTH_CHANNELS: tuple[str, ...] = ms.MOUTH_CHANNELS


def parse_arpabet(symbol: str) -> str:
    """'AH0' -> 'AH', 'sil'/'sp'/'pau'/'h#'/'+NOISE+' -> 'SIL'; ValueError names the valid set."""
    upper = symbol.strip().upper()
    if not upper or re.fullmatch(r"\+\w+\+", upper):  # pocketsphinx fillers: +BREATH+ ...
        return "SIL"
    base = re.sub(r"[0-2]$", "", upper)
    base = _ALIASES.get(base, base)
    if base not in VISEME_TARGETS:
        raise ValueError(
            f"unknown phone {symbol!r}; valid: {' '.join(PHONES)} "
            f"(stress digits 0-2 allowed; aliases: {' '.join(sorted(_ALIASES))})"
        )
    return base


def phone_targets(
    phones: Sequence[Phone],
    fps: float,
    config: VisemeConfig | None = None,
    num_frames: int | None = None,
) -> np.ndarray:
    """Motion-space targets: float32 array of shape (T, D), frame t at time t / fps.

    T = num_frames, or enough frames to cover the last phone's end. Mouth
    channels come from the phones through the dominance blend of the module
    docstring; every other channel is neutral. Phones must be in time order,
    non-overlapping, with 0 <= start_s < end_s; symbols go through parse_arpabet.
    """
    c = config or VisemeConfig()
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    segments = _validate(phones)
    if num_frames is None:
        num_frames = math.ceil(segments[-1][2] * fps - 1e-9) if segments else 0
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    times = np.arange(num_frames, dtype=np.float64) / fps  # (T,)
    horizon = max(segments[-1][2] if segments else 0.0, num_frames / fps) + 1.0
    rest = _targets("SIL", c)  # (C,)
    num = np.tile(c.background_dominance * rest, (num_frames, 1))  # T x C
    den = np.full((num_frames, len(_GROUPS)), c.background_dominance)  # T x G
    for symbol, start, end in _with_silence(segments, horizon):
        alpha, widths, plateau = _dominance_params(symbol, end - start, c)
        centre = 0.5 * (start + end)
        reach = plateau + float(widths.max()) * 20.0 ** (1.0 / c.shape_exponent)
        lo, hi = np.searchsorted(times, [centre - reach, centre + reach])
        if lo == hi:
            continue
        offset = times[lo:hi, None] - centre  # (t, 1)
        d = np.maximum(np.abs(offset) - plateau, 0.0)
        width = np.where(offset < 0.0, widths[:, 0], widths[:, 1])  # t x G
        dominance = alpha * np.exp(-((d / width) ** c.shape_exponent))  # t x G
        den[lo:hi] += dominance
        num[lo:hi] += dominance[:, _CHANNEL_GROUP] * _targets(symbol, c)
    motion = ms.neutral_motion(num_frames)
    motion[:, _MOTION_INDEX] = num / den[:, _CHANNEL_GROUP]
    return ms.clip_motion(motion)


def phones_from_end_times(
    segments: Sequence[tuple[str, float]], duration_s: float, engine: str
) -> tuple[Phone, ...]:
    """A synthesizer's (symbol, end time) segments -> phones tiling [0, duration_s].

    symbols already parsed (parse_arpabet). Only a pause may end past the audio (by
    at most 20 ms); ends are clamped to it, and a wave longer than the last segment
    extends that segment. SynthesisError, naming engine, when the times go backwards
    (several utterances), a phone ends after the audio, or there is no segment.
    """
    phones: list[Phone] = []
    start = 0.0
    for symbol, end in segments:
        if symbol != "SIL" and end > duration_s + 0.02:
            raise SynthesisError(f"{engine}'s {symbol} ends at {end} s, after the audio ends")
        end = min(end, duration_s)
        if end < start - 1e-6:
            raise SynthesisError(
                f"{engine} restarted its timings (several utterances?); split the text"
            )
        if end > start:
            phones.append(Phone(symbol, start, end))
            start = end
    if not phones:
        raise SynthesisError(f"{engine} printed no phone timings")
    if start < duration_s:
        phones[-1] = Phone(phones[-1].symbol, phones[-1].start_s, duration_s)
    return tuple(phones)


def is_vowel(symbol: str) -> bool:
    """Whether a parsed ARPAbet symbol (parse_arpabet) is a vowel: a syllable's nucleus."""
    return symbol in _VOWELS


def _validate(phones: Sequence[Phone]) -> list[tuple[str, float, float]]:
    """(symbol, start, end) per phone, symbols parsed; ValueError on bad timing."""
    out: list[tuple[str, float, float]] = []
    previous_end = 0.0
    for i, phone in enumerate(phones):
        start, end = float(phone.start_s), float(phone.end_s)
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0.0 or end <= start:
            raise ValueError(f"phone {i} ({phone}): need finite times with 0 <= start_s < end_s")
        if start < previous_end - 1e-6:
            raise ValueError(
                f"phone {i} ({phone}) starts before the previous one ends at {previous_end:.3f} s;"
                " phones must be sorted and must not overlap"
            )
        out.append((parse_arpabet(phone.symbol), start, end))
        previous_end = end
    return out


def _with_silence(
    segments: list[tuple[str, float, float]], horizon: float
) -> list[tuple[str, float, float]]:
    """Gaps, the time before the first phone and after the last (to horizon) become SIL."""
    out: list[tuple[str, float, float]] = []
    cursor = 0.0
    for segment in segments:
        if segment[1] - cursor > 1e-3:
            out.append(("SIL", cursor, segment[1]))
        out.append(segment)
        cursor = segment[2]
    out.append(("SIL", cursor, max(horizon, cursor + 1.0)))
    return out


def _dominance_params(
    symbol: str, duration: float, c: VisemeConfig
) -> tuple[np.ndarray, np.ndarray, float]:
    """alpha (G,), widths (G, 2) as (anticipatory, carry-over) seconds, plateau half-width."""
    alpha = np.array(_DOMINANCE[symbol], dtype=np.float64)
    if symbol == "SIL":
        widths = np.full((len(_GROUPS), 2), c.silence_width_s)
        return alpha, widths, max(0.0, 0.5 * duration - c.silence_edge_s)
    if symbol in _VOWELS:
        base = c.vowel_width_s
    elif symbol in _CLOSURES:
        base = c.closure_width_s
        alpha[:2] *= c.closure_dominance / 10.0  # the table's closures are written for 10
    else:
        base = c.consonant_width_s
    widths = np.tile(np.asarray(base, dtype=np.float64), (len(_GROUPS), 1))
    if symbol in _ROUNDED:
        widths[_GROUP_NAMES.index("round"), 0] = c.round_anticipation_s
    return alpha, widths, c.plateau_fraction * 0.5 * duration


def _targets(symbol: str, c: VisemeConfig) -> np.ndarray:
    """Targets (C,) of one phone in the internal channel layout, gains applied."""
    gains = {0: c.jaw_gain, 1: c.closure_gain}
    targets = VISEME_TARGETS[symbol]
    return np.array(
        [
            targets.get(ch, 0.0) * gains.get(int(g), c.lip_gain)
            for ch, g in zip(_CHANNELS, _CHANNEL_GROUP, strict=True)
        ]
    )
