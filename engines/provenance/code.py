"""The payload's error correction: CRC-16 + a rate-1/2, K=7 convolutional code, soft Viterbi.

    64 payload bits + CRC-16 (80) + 6 zero tail bits --(171, 133) octal--> 172 coded bits

The (171, 133) code is the one of 802.11 and DVB: free distance 10, so the
maximum-likelihood (Viterbi) decoder corrects every pattern of up to 4 hard
bit errors in a frame, and with soft decisions it needs about 5 dB less
signal-to-noise than the uncoded bits for the same frame error rate. The CRC
says whether what came out is a payload at all: a decoded frame whose CRC
does not match is reported as unreadable, never as a payload (a random frame
passes with probability 2**-16).

Numpy only; coded bits are 0/1 uint8, soft values are float (positive = 0).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CODED_BITS",
    "CORRECTABLE_ERRORS",
    "PAYLOAD_BITS",
    "crc16",
    "decode",
    "encode",
]

PAYLOAD_BITS = 64
_CRC_BITS = 16
_K = 7  # constraint length: 64 states
_TAIL = _K - 1
_GENERATORS = (0o171, 0o133)
_STATES = 1 << (_K - 1)
FRAME_BITS = PAYLOAD_BITS + _CRC_BITS
CODED_BITS = 2 * (FRAME_BITS + _TAIL)  # 172
# Free distance 10: any (10 - 1) // 2 hard errors are corrected by an ML decoder.
CORRECTABLE_ERRORS = 4


def _bits(value: int, count: int) -> np.ndarray:
    """`count` bits of value, most significant first, as uint8 0/1."""
    return np.array([(value >> (count - 1 - i)) & 1 for i in range(count)], dtype=np.uint8)


def _value(bits: np.ndarray) -> int:
    return int("".join(str(int(b)) for b in bits), 2) if len(bits) else 0


def crc16(bits: np.ndarray) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of a bit sequence."""
    crc = 0xFFFF
    for bit in bits:
        top = ((crc >> 15) & 1) ^ int(bit)
        crc = (crc << 1) & 0xFFFF
        if top:
            crc ^= 0x1021
    return crc


def _outputs() -> np.ndarray:
    """(states, 2 inputs, 2 generators) coded bits of each transition."""
    out = np.zeros((_STATES, 2, 2), dtype=np.uint8)
    for state in range(_STATES):
        for bit in range(2):
            register = (bit << (_K - 1)) | state  # newest bit on top
            for g, gen in enumerate(_GENERATORS):
                out[state, bit, g] = bin(register & gen).count("1") & 1
    return out


_OUT = _outputs()


def encode(payload: int) -> np.ndarray:
    """The 172 coded bits (uint8 0/1) of a 64-bit payload."""
    if not 0 <= payload < 1 << PAYLOAD_BITS:
        raise ValueError(f"payload must be an unsigned {PAYLOAD_BITS}-bit integer, got {payload}")
    data = _bits(payload, PAYLOAD_BITS)
    frame = np.concatenate([data, _bits(crc16(data), _CRC_BITS), np.zeros(_TAIL, np.uint8)])
    coded = np.empty(CODED_BITS, dtype=np.uint8)
    state = 0
    for i, bit in enumerate(frame):
        coded[2 * i : 2 * i + 2] = _OUT[state, bit]
        state = (state >> 1) | (int(bit) << (_K - 2))
    return coded


def _viterbi(soft: np.ndarray) -> np.ndarray:
    """ML frame bits from soft values of shape (CODED_BITS,), positive meaning bit 0."""
    steps = len(soft) // 2
    signs = 1.0 - 2.0 * _OUT.astype(np.float64)  # (states, 2, 2): +1 for a 0 bit
    branch_gain = signs  # metric: correlation of soft values with the transition's signs
    states = np.arange(_STATES)
    # Predecessors of next state n: n = (s >> 1) | (b << 5): s = ((n << 1) & 63) | low bit.
    bit_of = states >> (_K - 2)  # input bit that leads into n
    pred = np.stack([((states << 1) & (_STATES - 1)) | low for low in (0, 1)])  # (2, states)
    metric = np.full(_STATES, -np.inf)
    metric[0] = 0.0
    choices = np.zeros((steps, _STATES), dtype=np.uint8)
    for t in range(steps):
        pair = soft[2 * t : 2 * t + 2]
        gains = branch_gain[pred, bit_of[None, :]] @ pair  # (2, states)
        candidates = metric[pred] + gains
        choice = np.argmax(candidates, axis=0)
        choices[t] = choice
        metric = candidates[choice, states]
    bits = np.zeros(steps, dtype=np.uint8)
    state = 0  # the tail drives the encoder back to state 0
    for t in range(steps - 1, -1, -1):
        bits[t] = state >> (_K - 2)
        state = int(pred[choices[t, state], state])
    return bits


def decode(soft: np.ndarray) -> int | None:
    """The payload from 172 soft values (positive = coded 0), or None when its CRC fails."""
    soft = np.asarray(soft, dtype=np.float64)
    if soft.shape != (CODED_BITS,):
        raise ValueError(f"soft values must have shape ({CODED_BITS},), got {soft.shape}")
    frame = _viterbi(soft)
    data, check = frame[:PAYLOAD_BITS], frame[PAYLOAD_BITS:FRAME_BITS]
    if crc16(data) != _value(check):
        return None
    return _value(data)
