"""Training speech from Debian's festival, with the phone timings festival itself used.

Like flite (engines.training.corpus.synthesize), festival builds its waveform
from its own Segment relation, so each segment's end time is the
synthesizer's ground truth, not an alignment. A small Scheme script run with
`festival --batch` selects the voice, sets speed and pitch, synthesizes the
text, saves the wave and prints one "SEG <name> <end>" line per segment.

- Voices are written "festival:<name>", e.g. "festival:ked_diphone"
  (festvox-kdlpc16k, a US male diphone voice at 16 kHz) and
  "festival:cmu_us_slt_arctic_hts" (festvox-us-slt-hts, an HTS voice at
  32 kHz, resampled). festival_voices() lists the installed English ones.
- Speed: stretch > 1 is slower. For a diphone voice it multiplies the voice's
  own Duration_Stretch (ked_diphone sets 1.1); an HTS voice ignores
  Duration_Stretch, so stretch goes to hts_engine's speed rate "-r" as
  1 / stretch (festival then updates the segment ends it reports).
- Pitch: pitch_ratio scales target_f0_mean of the voice's int_lr_params
  (ked_diphone 105 Hz). HTS voices generate their own f0 and ignore both
  int_lr_params and hts_engine's "-fm" (byte-identical audio, measured), so
  their pitch is None.
- Phone names: festival's radio phoneset, mapped with
  engines.training.visemes.parse_arpabet (pau/h# -> SIL, ax -> AH, ...), plus
  the two radio symbols it does not know: hv (voiced h) -> HH, brth -> SIL.
- Timings: the segments tile the utterance from 0; ends are clamped to the
  audio length (the last pause may end a few ms after the wave) and the last
  segment is extended to the end of the audio.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.speech import read_engine_wav, run_engine
from ..errors import SynthesisError
from .visemes import Phone, parse_arpabet, phones_from_end_times

__all__ = [
    "FESTIVAL_PREFIX",
    "FESTIVAL_TRAIN_VOICES",
    "FESTIVAL_HELD_OUT_VOICES",
    "FestivalSpeech",
    "festival_voices",
    "synthesize_festival",
]

FESTIVAL_PREFIX = "festival:"
# Training voices, used where installed: ked (festvox-kdlpc16k), kal (festvox-kallpc16k).
FESTIVAL_TRAIN_VOICES: tuple[str, ...] = ("festival:ked_diphone", "festival:kal_diphone")
# The same speaker as flite's held-out slt, from another synthesizer: held out too.
FESTIVAL_HELD_OUT_VOICES: tuple[str, ...] = ("festival:cmu_us_slt_arctic_hts",)
_RADIO_EXTRA = {"hv": "HH", "brth": "SIL"}  # radio phones parse_arpabet does not accept
_TIMEOUT_S = 60.0
_LIST_SCRIPT = """(mapcar (lambda (v) (format t "VOICE %s %l\\n" v
  (cadr (assoc 'language (cadr (voice.description v)))))) (voice.list))
"""
# Placeholders: VOICE, STRETCH, RATIO (a number or nil), TEXT, WAV.
_SYNTH_SCRIPT = """(voice_{voice})
(set! fc_hts (equal? (Parameter.get 'Synth_Method) 'HTS))
(if fc_hts
  (set! hts_engine_params (append hts_engine_params (list (list "-r" (/ 1.0 {stretch})))))
  (let ((d (Parameter.get 'Duration_Stretch)))
    (Parameter.set 'Duration_Stretch (* {stretch} (if d d 1.0)))))
(set! fc_ratio {ratio})
(set! fc_mean (and fc_ratio (not fc_hts) (boundp 'int_lr_params)
  (assoc 'target_f0_mean int_lr_params)))
(if fc_mean
  (set! int_lr_params (cons (list 'target_f0_mean (* fc_ratio (cadr fc_mean)))
    (remove fc_mean int_lr_params))))
(if fc_mean (format t "PITCH %f\\n" (* fc_ratio (cadr fc_mean))) (format t "PITCH none\\n"))
(set! utt (Utterance Text "{text}"))
(utt.synth utt)
(utt.save.wave utt "{wav}" 'riff)
(mapcar (lambda (s) (format t "SEG %s %f\\n" (item.name s) (item.feat s "end")))
  (utt.relation.items utt 'Segment))
"""


@dataclass(frozen=True)
class FestivalSpeech:
    """samples: float32 (S,) mono at sample_rate; phones tile [0, S / sample_rate].

    pitch_hz is the f0 target mean festival used, None where the voice ignores it.
    """

    text: str
    voice: str
    samples: np.ndarray
    sample_rate: int
    phones: tuple[Phone, ...]
    stretch: float
    pitch_hz: float | None


@functools.lru_cache(maxsize=1)
def festival_voices() -> tuple[str, ...]:
    """Installed English festival voices ("festival:<name>"); SynthesisError without festival."""
    with tempfile.TemporaryDirectory(prefix="facecast-festival-") as tmp:
        script = Path(tmp) / "list.scm"
        script.write_text(_LIST_SCRIPT, encoding="utf-8")
        stdout = _run([str(script)], "list its voices")
    voices = []
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == "VOICE" and fields[2] == "english":
            voices.append(FESTIVAL_PREFIX + fields[1])
    return tuple(sorted(voices))


def synthesize_festival(
    text: str,
    voice: str = "festival:ked_diphone",
    stretch: float = 1.0,
    pitch_ratio: float | None = None,
    sample_rate: int = 16000,
) -> FestivalSpeech:
    """Speak one text with a festival voice; samples at sample_rate and festival's own phones.

    pitch_ratio times the voice's own mean f0 (None keeps it). SynthesisError
    when festival or the voice is missing or festival fails.
    """
    text = " ".join(text.split())
    if not text:
        raise SynthesisError("the text to synthesize is empty")
    if voice not in festival_voices():
        raise SynthesisError(
            f"festival voice {voice!r} is not installed; installed: {festival_voices()} "
            "(apt-get install festvox-kdlpc16k festvox-us-slt-hts)"
        )
    if not 0.25 <= stretch <= 4.0:
        raise ValueError(f"stretch must be in [0.25, 4], got {stretch}")
    if pitch_ratio is not None and not 0.5 <= pitch_ratio <= 2.0:
        raise ValueError(f"pitch_ratio must be in [0.5, 2] or None, got {pitch_ratio}")
    with tempfile.TemporaryDirectory(prefix="facecast-festival-") as tmp:
        wav, script = Path(tmp) / "speech.wav", Path(tmp) / "speak.scm"
        script.write_text(_script(text, voice, stretch, pitch_ratio, wav), encoding="utf-8")
        stdout = _run([str(script)], f"speak {text!r}")
        if not wav.is_file():
            raise SynthesisError(f"festival wrote no wav for {text!r}")
        samples = read_engine_wav(wav, sample_rate)
    pitch_hz = _parse_pitch(stdout)
    phones = parse_segments(stdout, len(samples) / sample_rate)
    return FestivalSpeech(text, voice, samples, sample_rate, phones, stretch, pitch_hz)


def _script(text: str, voice: str, stretch: float, ratio: float | None, wav: Path) -> str:
    quoted = text.replace("\\", " ").replace('"', " ")  # a Scheme string literal
    return _SYNTH_SCRIPT.format(
        voice=voice.removeprefix(FESTIVAL_PREFIX),
        stretch=f"{stretch:.6f}",
        ratio="nil" if ratio is None else f"{ratio:.6f}",
        text=quoted,
        wav=str(wav),
    )


def _run(args: list[str], what: str) -> str:
    """festival --batch SCRIPT; its stdout. festival exits 0 on some Scheme errors: check stderr."""
    if shutil.which("festival") is None:
        raise SynthesisError("festival is not installed; install it: apt-get install festival")
    result = run_engine(["festival", "--batch", *args], what, timeout_s=_TIMEOUT_S)
    if "SIOD ERROR" in result.stderr:
        raise SynthesisError(f"festival failed to {what}: {result.stderr.strip()[:200]}")
    return result.stdout


def _parse_pitch(stdout: str) -> float | None:
    for line in stdout.splitlines():
        if line.startswith("PITCH "):
            value = line.split()[1]
            return None if value == "none" else round(float(value), 1)
    raise SynthesisError("festival's script printed no PITCH line")


def festival_symbol(name: str) -> str:
    """A radio phoneset name -> a visemes symbol; SynthesisError for one neither knows."""
    try:
        return _RADIO_EXTRA.get(name) or parse_arpabet(name)
    except ValueError as exc:
        raise SynthesisError(f"festival emitted an unknown phone: {exc}") from exc


def parse_segments(stdout: str, duration_s: float) -> tuple[Phone, ...]:
    """'SEG pau 0.22' lines (end times) -> contiguous phones from 0 to duration_s."""
    segments = []
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == "SEG":
            segments.append((festival_symbol(fields[1]), float(fields[2])))
    return phones_from_end_times(segments, duration_s, "festival")
