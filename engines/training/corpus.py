"""A speech corpus with phone timings, synthesized locally by Debian's flite (no downloads).

Training data for the learned audio encoder and motion sampler (issue 4). Every
utterance is a generated English sentence spoken by one flite voice, with the
phone segmentation flite itself used to build the waveform.

- Text: make_sentences fills 15 templates from an embedded vocabulary of ~420
  common words picked so that bilabials (p b m), rounded sounds (w uw ow),
  open vowels (aa ae), fricatives (f v s sh) and th occur often. Seeded, so a
  seed names a text set on every machine.
- Voices: kal (diphone, 8 kHz, resampled), kal16 (the same voice at 16 kHz),
  awb, rms (Scottish / US male) and slt (US female), the clustergen voices.
  awb_time is a limited-domain voice (it only says times) and is refused.
- Speed: flite's duration_stretch (> 1 is slower; 0.8-1.25 sounds natural).
- Pitch: flite's int_f0_target_mean in Hz, drawn as a ratio of each voice's own
  mean (kal 95, awb 125, slt 175 Hz) so that slt stays a female voice. rms
  ignores the feature (its audio is byte-identical), so its pitch is None.
- Augmentation (augment): white or pink noise at a drawn SNR (speech+reverb
  power over noise power, whole clip), and with some probability a synthetic
  room: a direct path plus exponentially decaying noise for a drawn RT60 and
  direct-to-reverberant ratio. Convolution is causal and the length is kept,
  so the phone timings stay valid. The result is scaled to a peak of 0.9.

Timings: flite's -psdur prints every segment's END time, the segments tile the
utterance from 0 and the waveform is generated from exactly these durations, so
they are the synthesizer's ground truth, not an alignment. Caveats: segment
boundaries are the synthesizer's, e.g. a stop /p/ holds its closure and its
burst, and a diphone voice (kal) crossfades units around each boundary; the
last pause can end after the audio (kal by ~0.1 s) or a few ms past it (slt,
awb), so ends are clamped to the audio length. Phone symbols are
engines.training.visemes symbols (pau -> SIL, ax -> AH).

espeak-ng voices and a folder of real recordings (audio + same-stem .txt) join
the corpus through engines.training.aligned_speech, whose phones come from pocketsphinx
forced alignment (espeak-ng does not report its segment times on the command
line). A share of utterances (CorpusConfig.espeak_share) uses them.

festival voices (engines.training.festival_speech; festival, like flite, reports
the segment times it synthesized from) speak another share
(CorpusConfig.festival_share), split evenly between the installed voices of
CorpusConfig.festival_voices, with the same stretch and pitch-ratio draws as
flite (a voice that ignores the pitch target records pitch_hz None).

A share of utterances (CorpusConfig.augmentation.share) also gets the
transforms real recordings need (engines.training.augment): sox tempo (phone
times scaled with it) and pitch before the room and noise, then EQ, a
telephone or 8 kHz band limit and an MP3 or Opus round trip, all
sample-aligned. The record's "augment" field lists what was applied.

Held out of training by default, for evaluation on voices the model never
heard: flite's slt (the only female flite voice),
aligned_speech.ESPEAK_HELD_OUT_VOICES and
festival_speech.FESTIVAL_HELD_OUT_VOICES (festival's cmu_us_slt_arctic_hts: the
same speaker as flite's slt from another synthesizer, so it stays out too).
The training festival voices are FESTIVAL_TRAIN_VOICES where installed:
ked_diphone (festvox-kdlpc16k) and kal_diphone (festvox-kallpc16k).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import fftconvolve

from ..audio.speech import available_voices, read_engine_wav, run_engine
from ..errors import SynthesisError
from .aligned_speech import ESPEAK_TRAIN_VOICES, AlignedSpeech, iter_recordings, synthesize_espeak
from .augment import AugmentConfig, augment_channel, augment_speaker
from .festival_speech import (
    FESTIVAL_TRAIN_VOICES,
    FestivalSpeech,
    festival_voices,
    synthesize_festival,
)
from .phone_align import PhoneAligner
from .visemes import Phone, parse_arpabet, phones_from_end_times

# fmt: off
__all__ = [
    "SynthesisError", "CorpusConfig", "AugmentConfig", "SynthUtterance", "Augmented",
    "CorpusItem", "VOICES",
    "TRAIN_VOICES", "flite_voices", "make_sentences", "synthesize", "augment", "build_corpus",
    "load_corpus",
]
# fmt: on

VOICES: tuple[str, ...] = ("kal", "kal16", "awb", "rms", "slt")
TRAIN_VOICES: tuple[str, ...] = ("kal", "kal16", "awb", "rms")  # slt is held out
# Mean f0 of each voice as flite speaks it (measured); None: flite ignores the pitch target.
_VOICE_F0_HZ: dict[str, float | None] = {
    "kal": 95.0,
    "kal16": 95.0,
    "awb": 125.0,
    "rms": None,
    "slt": 175.0,
}
_PEAK = 0.9


@dataclass(frozen=True)
class CorpusConfig:
    """What build_corpus draws per utterance; every range is (low, high), drawn uniformly."""

    voices: tuple[str, ...] = TRAIN_VOICES  # flite voices
    espeak_voices: tuple[str, ...] = ESPEAK_TRAIN_VOICES
    espeak_share: float = 0.35  # of utterances spoken by espeak-ng instead of flite
    espeak_wpm_range: tuple[float, float] = (140.0, 210.0)
    espeak_pitch_range: tuple[float, float] = (35.0, 65.0)
    festival_voices: tuple[str, ...] = FESTIVAL_TRAIN_VOICES  # used where installed
    festival_share: float = 0.2  # of utterances spoken by festival
    stretch_range: tuple[float, float] = (0.8, 1.25)  # flite duration_stretch; > 1 is slower
    pitch_ratio_range: tuple[float, float] = (0.85, 1.2)  # times the voice's own mean f0
    snr_db_range: tuple[float, float] = (15.0, 40.0)
    pink_noise_probability: float = 0.5
    reverb_probability: float = 0.3
    rt60_s_range: tuple[float, float] = (0.15, 0.6)
    drr_db_range: tuple[float, float] = (0.0, 10.0)  # direct-to-reverberant energy ratio
    sample_rate: int = 16000
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class SynthUtterance:
    """samples: float32 (S,) mono at sample_rate; phones tile [0, S / sample_rate]."""

    text: str
    voice: str
    samples: np.ndarray
    sample_rate: int
    phones: tuple[Phone, ...]
    stretch: float
    pitch_hz: float | None


@dataclass(frozen=True)
class Augmented:
    """samples: float32 (S,), the input's length; rt60_s/drr_db are None without reverb."""

    samples: np.ndarray
    snr_db: float
    noise: str
    rt60_s: float | None
    drr_db: float | None


@dataclass(frozen=True)
class CorpusItem:
    """One utterance read back: float32 (S,) samples, its phones and its manifest record."""

    path: Path
    samples: np.ndarray
    sample_rate: int
    phones: tuple[Phone, ...]
    meta: dict[str, object]


# Vocabulary by role. Verbs are "base:past".
# fmt: off
_NAMES = """Bob Mary Paul Emma Molly Peter Beth Tom Maggie Owen Ruth Sophie Martin Fiona
Victor Bruno Walter Wendy Theo Abby Max Pam Hugo June Luke Rosa Mike Philip Harvey Ben
Noah Vera Gabe Amos Otto Flora Simon Bonnie Maureen Woody"""
_NOUNS = """apple baby ball banana basket beach bear bell berry bike bird blanket boat bone
book boot bottle bowl box bread bridge broom brush bubble bus butter button cabin camera
map market moon mouse movie museum music mop muffin mug pan paper park party path peach pen
penny phone piano picture pie pillow pipe plate plum pocket pool potato puppy pump room roof
rope rose shoe soup spoon stove story road window wagon wall water wave whale wheel wolf wood
wool world yard zoo coat goat home snow stone photo fog farm father mother brother fish
flower fork fox van valley village violin vase vest thumb thunder bath mouth cloth tooth
sheep ship shop shell shirt show sugar salt sock sofa cat hat bag jacket lamp pot top dog
clock job doll cotton garden kitchen ocean island jar car star guitar balloon mirror pumpkin
poem pebble meadow lemon lobster sandwich window tomato pasta rainbow tower movie cupboard"""
_ADJECTIVES = """big bumpy blue brown bright bold broad black pink purple plump polite pale
proud warm wet white wide wild woolly smooth soft small shiny sharp short famous funny fresh
full fast vast velvet thick thin happy calm odd hot dark tall loud cool old gold slow low
round new huge cute moody muddy empty humble mellow hollow yellow rough cozy foamy"""
_VERBS = """bake:baked borrow:borrowed bring:brought buy:bought move:moved mend:mended
pack:packed paint:painted pick:picked pull:pulled push:pushed wash:washed watch:watched
open:opened show:showed throw:threw follow:followed fold:folded hold:held lose:lost
choose:chose use:used pour:poured fill:filled fix:fixed feed:fed find:found visit:visited
sweep:swept save:saved serve:served share:shared shake:shook see:saw sell:sold stop:stopped
touch:touched catch:caught carry:carried grab:grabbed drop:dropped boil:boiled polish:polished
paint:painted move:moved scrub:scrubbed wrap:wrapped wipe:wiped swap:swapped measure:measured
remove:removed approve:approved improve:improved photograph:photographed"""
_ADVERBS = """slowly boldly warmly smoothly happily quietly proudly promptly barely softly
firmly politely calmly often always maybe twice swiftly playfully patiently thoughtfully"""
_PLACES = """by noon|at home|on Monday|this morning|in May|tomorrow|before bedtime|every
Thursday|last month|on the way home|at the beach|by the pool|near the river|after the
show|in the warm bath|before the movie|at the museum|on the boat|by the window|over the
bridge|from the market|with both hands|beneath the moon|without a word"""
_DETERMINERS = "the my your his her our one more some this that every"
_PREPOSITIONS = "on in by with from behind beside above below under near into over"
_TEMPLATES = (
    "{Name} {past} {det} {adj} {noun} {prep} {det} {noun}.",
    "{Det} {adj} {noun} {past} {det} {noun} {adv}.",
    "Would you {verb} {det} {noun} {place}?",
    "{Name} and {Name} {past} {det} {adj} {noun} {place}.",
    "Please {verb} {det} {adj} {noun} {place}.",
    "{Name} {past} {adv}, but {det} {noun} was {adj}.",
    "We will {verb} {det} {noun} and {det} {adj} {noun} {place}.",
    "Maybe {Name} {past} {det} {noun} {prep} {det} {adj} {noun}.",
    "Why is {det} {noun} so {adj} {place}?",
    "{Det} {noun} {prep} {det} {noun} looks {adj} and {adj}.",
    "{Name} {adv} {past} {det} {noun}, then {past} {det} {adj} {noun}.",
    "How much for {det} {adj} {noun} {prep} {det} {noun}?",
    "My {noun} is {adj}, your {noun} is {adj}.",
    "Move {det} {noun} {prep} {det} {noun}, {Name}, {place}.",
    "{Name} {past} {det} {adj} {noun} {place}, {adv}.",
)
# fmt: on


def _unique(words: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(w.strip().replace("\n", " ") for w in words.split(sep)))


_WORDS: dict[str, tuple[str, ...]] = {
    "Name": _unique(_NAMES),
    "noun": _unique(_NOUNS),
    "adj": _unique(_ADJECTIVES),
    "verb": tuple(v.split(":")[0] for v in _unique(_VERBS)),
    "past": tuple(v.split(":")[1] for v in _unique(_VERBS)),
    "adv": _unique(_ADVERBS),
    "place": _unique(_PLACES, "|"),
    "det": _unique(_DETERMINERS),
    "Det": tuple(d.capitalize() for d in _unique(_DETERMINERS)),
    "prep": _unique(_PREPOSITIONS),
}


def make_sentences(count: int, seed: int) -> list[str]:
    """`count` generated sentences, the same for the same seed on every machine."""
    rng = np.random.default_rng(seed)
    sentences: list[str] = []
    for _ in range(count):
        template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
        parts = template.replace("}", "{").split("{")  # literal, key, literal, key, ...
        for i in range(1, len(parts), 2):
            choices = _WORDS[parts[i]]
            parts[i] = choices[int(rng.integers(len(choices)))]
        sentences.append("".join(parts))
    return sentences


def flite_voices() -> tuple[str, ...]:
    """The corpus voices the installed flite offers; SynthesisError without flite."""
    offered = set(available_voices("flite"))
    return tuple(v for v in VOICES if v in offered)


def synthesize(
    text: str,
    voice: str = "slt",
    stretch: float = 1.0,
    pitch_hz: float | None = None,
    sample_rate: int = 16000,
) -> SynthUtterance:
    """Speak one sentence with flite; samples at sample_rate and flite's own phone timings.

    pitch_hz (flite's int_f0_target_mean) None keeps the voice's pitch; for a
    voice that ignores it (rms) the result records None.
    """
    text = " ".join(text.split())
    if not text:
        raise SynthesisError("the text to synthesize is empty")
    # flite silently falls back to kal on an unknown voice: check first.
    if voice not in flite_voices():
        raise SynthesisError(f"voice {voice!r} is not available; use one of {flite_voices()}")
    if not 0.25 <= stretch <= 4.0:
        raise ValueError(f"stretch must be in [0.25, 4] (flite duration_stretch), got {stretch}")
    command = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.6f}"]
    if pitch_hz is not None and _VOICE_F0_HZ.get(voice) is not None:
        command += ["--setf", f"int_f0_target_mean={pitch_hz:.3f}"]
    else:
        pitch_hz = None
    with tempfile.TemporaryDirectory(prefix="facecast-flite-") as tmp:
        path = Path(tmp) / "speech.wav"
        result = run_engine([*command, "-psdur", "-t", text, "-o", str(path)], f"speak {text!r}")
        if not path.is_file():
            raise SynthesisError(f"flite wrote no wav for {text!r}")
        samples = read_engine_wav(path, sample_rate)
    phones = _parse_psdur(result.stdout, len(samples) / sample_rate)
    return SynthUtterance(text, voice, samples, sample_rate, phones, stretch, pitch_hz)


def _parse_psdur(stdout: str, duration_s: float) -> tuple[Phone, ...]:
    """'pau:0.193 b:0.224 ...' (end times) -> contiguous phones from 0 to duration_s."""
    segments = []
    for token in stdout.split():
        symbol, sep, end_text = token.rpartition(":")
        if not sep:
            raise SynthesisError(f"unexpected flite -psdur token {token!r}")
        segments.append((parse_arpabet(symbol), float(end_text)))
    return phones_from_end_times(segments, duration_s, "flite")


def augment(
    samples: np.ndarray, rng: np.random.Generator, config: CorpusConfig | None = None
) -> Augmented:
    """Optional causal reverb, then noise at a drawn SNR, then scaling to a 0.9 peak.

    samples: float32 (S,) at config.sample_rate; the output has the same shape.
    """
    c = config or CorpusConfig()
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"samples must be a non-empty 1-D array, got shape {x.shape}")
    rt60 = drr = None
    if rng.random() < c.reverb_probability:
        rt60, drr = float(rng.uniform(*c.rt60_s_range)), float(rng.uniform(*c.drr_db_range))
        x = fftconvolve(x, _room_response(rt60, drr, c.sample_rate, rng))[: len(x)]
    snr = float(rng.uniform(*c.snr_db_range))
    kind = "pink" if rng.random() < c.pink_noise_probability else "white"
    noise = _pink_noise(len(x), rng) if kind == "pink" else rng.standard_normal(len(x))
    signal_power = float(np.mean(x**2)) or 1e-12
    noise *= np.sqrt(signal_power / (np.mean(noise**2) * 10.0 ** (snr / 10.0)))
    mixed = x + noise
    mixed *= _PEAK / max(float(np.abs(mixed).max()), 1e-9)
    return Augmented(mixed.astype(np.float32), snr, kind, rt60, drr)


def _room_response(rt60: float, drr_db: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Impulse response: 1 at t=0 plus a noise tail decaying 60 dB in rt60 seconds."""
    t = np.arange(1, int(rt60 * rate)) / rate
    tail = rng.standard_normal(len(t)) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 60 dB amplitude
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))  # tail energy vs direct 1
    return np.concatenate([[1.0], tail])


def _pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f power spectrum noise by shaping white noise in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1.0))
    return np.fft.irfft(spectrum, n)


def build_corpus(
    out_dir: Path,
    count: int,
    seed: int,
    config: CorpusConfig | None = None,
    recordings: Path | None = None,
) -> Path:
    """Write utt_00001.wav ... (16-bit mono) and manifest.jsonl into out_dir; returns its path.

    count synthesized utterances, then every aligned file of the recordings
    folder (as they are: no augmentation). The same seed, config and
    synthesizers give byte-identical files.
    """
    c = config or CorpusConfig()
    voices = [v for v in c.voices if v in flite_voices()]
    if not voices:
        raise SynthesisError(f"none of the voices {c.voices} is installed; flite -lv lists them")
    festival = _festival_voices(c)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.jsonl"
    aligner = PhoneAligner(c.sample_rate) if (c.espeak_share > 0 or recordings) else None
    speakers = _Speakers(voices, festival, aligner)
    with manifest.open("w", encoding="utf-8") as out:
        for i, text in enumerate(make_sentences(count, seed), start=1):
            rng = np.random.default_rng([seed, i])  # per utterance: a prefix of the corpus
            path = out_dir / f"utt_{i:05d}.wav"
            record = _make_utterance(path, text, speakers, rng, c)
            out.write(json.dumps(record, sort_keys=True) + "\n")
        if recordings is not None and aligner is not None:
            for j, speech in enumerate(iter_recordings(recordings, aligner, c.sample_rate)):
                path = out_dir / f"rec_{j + 1:05d}.wav"
                record = _write(path, speech.samples, c.sample_rate, speech.phones)
                record = {**record, "text": speech.text, "voice": speech.source}
                out.write(json.dumps(record, sort_keys=True) + "\n")
    return manifest


def _festival_voices(c: CorpusConfig) -> list[str]:
    """The config's installed festival voices; SynthesisError if a share asks for none."""
    if c.festival_share <= 0 or not c.festival_voices:
        return []
    try:
        installed = festival_voices()
    except SynthesisError as exc:
        raise SynthesisError(f"{exc}, or build with CorpusConfig(festival_share=0)") from exc
    voices = [v for v in c.festival_voices if v in installed]
    if not voices:
        raise SynthesisError(
            f"none of the festival voices {c.festival_voices} is installed (installed: "
            f"{installed}); apt-get install festvox-kdlpc16k, or set festival_share=0"
        )
    return voices


@dataclass(frozen=True)
class _Speakers:
    """The synthesizers a corpus build draws from."""

    flite: list[str]
    festival: list[str]
    aligner: PhoneAligner | None


def _make_utterance(
    path: Path, text: str, speakers: _Speakers, rng: np.random.Generator, c: CorpusConfig
) -> dict[str, object]:
    spoken, extra = _speak(text, speakers, rng, c)
    samples, phones = spoken.samples, spoken.phones
    applied: dict[str, object] = {}
    treated = rng.random() < c.augmentation.share
    if treated:
        samples, phones, applied = augment_speaker(
            samples, phones, rng, c.augmentation, c.sample_rate
        )
    aug = augment(samples, rng, c)
    samples = aug.samples
    if treated:
        samples, channel = augment_channel(samples, rng, c.augmentation, c.sample_rate)
        samples = samples * np.float32(_PEAK / max(float(np.abs(samples).max()), 1e-9))
        applied = {**applied, **channel}
    record = _write(path, samples, c.sample_rate, phones)
    return {
        **record,
        **extra,
        "text": text,
        "snr_db": round(aug.snr_db, 3),
        "noise": aug.noise,
        "rt60_s": None if aug.rt60_s is None else round(aug.rt60_s, 4),
        "drr_db": None if aug.drr_db is None else round(aug.drr_db, 3),
        "augment": applied if treated else None,
    }


def _speak(
    text: str, speakers: _Speakers, rng: np.random.Generator, c: CorpusConfig
) -> tuple[SynthUtterance | AlignedSpeech | FestivalSpeech, dict[str, object]]:
    """Draw a synthesizer, voice, speed and pitch; the speech and its manifest fields."""
    voice = speakers.flite[int(rng.integers(len(speakers.flite)))]
    stretch = round(float(rng.uniform(*c.stretch_range)), 3)
    ratio = float(rng.uniform(*c.pitch_ratio_range))
    pick = rng.random()
    if speakers.aligner is not None and c.espeak_voices and pick < c.espeak_share:
        espeak_voice = c.espeak_voices[int(rng.integers(len(c.espeak_voices)))]
        wpm, epitch = int(rng.uniform(*c.espeak_wpm_range)), int(rng.uniform(*c.espeak_pitch_range))
        try:
            spoken = synthesize_espeak(
                text, espeak_voice, speakers.aligner, wpm, epitch, c.sample_rate
            )
            return spoken, {"voice": espeak_voice, "words_per_minute": wpm, "espeak_pitch": epitch}
        except SynthesisError as exc:  # an alignment failed: flite says it instead
            failed: dict[str, object] = {"espeak_failed": str(exc)}
    else:
        failed = {}
    if speakers.festival and c.espeak_share <= pick < c.espeak_share + c.festival_share:
        fvoice = speakers.festival[int(rng.integers(len(speakers.festival)))]
        said = synthesize_festival(text, fvoice, stretch, round(ratio, 3), c.sample_rate)
        return said, {"voice": fvoice, "stretch": stretch, "pitch_hz": said.pitch_hz}
    base_f0 = _VOICE_F0_HZ.get(voice)
    pitch = round(base_f0 * ratio, 1) if base_f0 is not None else None
    flite = synthesize(text, voice, stretch, pitch, c.sample_rate)
    return flite, {**failed, "voice": voice, "stretch": stretch, "pitch_hz": flite.pitch_hz}


def _write(
    path: Path, samples: np.ndarray, sample_rate: int, phones: tuple[Phone, ...]
) -> dict[str, object]:
    """Write 16-bit mono wav; the manifest fields every record shares."""
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)
    wavfile.write(str(path), sample_rate, pcm)
    return {
        "audio": path.name,
        "sample_rate": sample_rate,
        "num_samples": len(pcm),
        "phones": [[p.symbol, round(p.start_s, 4), round(p.end_s, 4)] for p in phones],
    }


def load_corpus(manifest: Path) -> Iterator[CorpusItem]:
    """Read a build_corpus manifest back, one utterance at a time."""
    manifest = Path(manifest)
    with manifest.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            meta = json.loads(line)
            path = manifest.parent / meta["audio"]
            samples = read_engine_wav(path, int(meta["sample_rate"]))
            phones = tuple(Phone(s, float(a), float(b)) for s, a, b in meta["phones"])
            yield CorpusItem(path, samples, int(meta["sample_rate"]), phones, meta)
