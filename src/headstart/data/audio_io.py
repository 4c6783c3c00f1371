"""Reading audio files: any rate, channel count or bit depth libsndfile decodes, resampled with soxr, and the
check that a file is a usable clip.

Decoding is soundfile's (libsndfile: WAV, FLAC, OGG/Vorbis, MP3 from libsndfile 1.1) and resampling is soxr's;
nothing here decodes or resamples by hand. Both libraries load lazily, so importing headstart stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from headstart.errors import DataError

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3"})
#: Sample rates outside this range are a damaged header, not a recording (telephone audio is 8 kHz, studio
#: audio at most 768 kHz).
SAMPLE_RATE_RANGE = (2_000, 768_000)
#: Shorter than one 25 ms analysis frame, the unit every speech and audio front end works in.
MIN_CLIP_SECONDS = 0.025
#: A clip is at most an hour long; longer recordings are to be cut into clips first.
MAX_CLIP_SECONDS = 3600.0
_READ_ERRORS = (RuntimeError, OSError, ValueError, TypeError)


def audio_problem(path: str) -> str | None:
    """Why ``path`` is not a usable audio clip, or ``None``: unreadable, no channels, an absurd sample rate,
    empty (0 samples), shorter than 25 ms, longer than an hour, or silent (every sample zero).

    Everything but silence is read from the header; silence is found by decoding until the first non-zero
    sample, which is at the start of any real recording.
    """
    import soundfile

    try:
        info = soundfile.info(path)
        low, high = SAMPLE_RATE_RANGE
        if info.channels < 1:
            return "no audio channels"
        if not low <= info.samplerate <= high:
            return f"sample rate {info.samplerate:,} Hz is outside {low:,}-{high:,} Hz (a damaged header?)"
        if info.frames == 0:
            return "empty (0 samples)"
        seconds = info.frames / info.samplerate
        if seconds < MIN_CLIP_SECONDS:
            return f"too short: {seconds * 1000:.1f} ms, under {MIN_CLIP_SECONDS * 1000:.0f} ms"
        if seconds > MAX_CLIP_SECONDS:
            return (f"lasts {_clock(seconds)}, over the {_clock(MAX_CLIP_SECONDS)} limit of one clip; cut it into "
                    f"clips (e.g. `ffmpeg -i {Path(path).name} -f segment -segment_time 30 clip%03d.wav`)")
        for block in soundfile.blocks(path, blocksize=1 << 16, dtype="float32", always_2d=True):
            if np.any(block):
                return None
    except _READ_ERRORS as err:
        return str(err) or type(err).__name__
    return "silent (every sample is zero)"


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def audio_seconds(path: str) -> float:
    """The duration of an audio file from its header, in seconds."""
    import soundfile

    info = soundfile.info(path)
    return info.frames / info.samplerate


def read_audio(path: str | Path, sample_rate: int, *, max_seconds: float | None = None) -> np.ndarray:
    """A clip as mono float32 samples in [-1, 1] at ``sample_rate`` Hz: channels averaged, resampled with soxr
    (high quality).

    Args:
        path: An audio file (WAV, FLAC, OGG, MP3, ... any format libsndfile reads).
        sample_rate: The rate to resample to.
        max_seconds: Read only this many seconds from the start (the rest is never decoded).

    Raises:
        DataError: The file cannot be decoded (names it).

    Example:
        >>> samples = read_audio("recordings/yes/1.flac", 16000)
    """
    import soundfile
    import soxr

    try:
        with soundfile.SoundFile(str(path)) as file:
            frames = -1 if max_seconds is None else math.ceil(max_seconds * file.samplerate)
            data = file.read(frames, dtype="float32", always_2d=True)
            rate = file.samplerate
    except _READ_ERRORS as err:
        raise DataError(f"cannot read audio {path}: {err}; remove or replace the file") from None
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate and len(mono):
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)
