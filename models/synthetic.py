"""Seeded synthetic datasets: token sequences, keyword-spotting audio features, noisy digits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgepipe.models.datasets import digits_images, split
from edgepipe.models.registry import DatasetSplits

if TYPE_CHECKING:
    import torch

VOCAB, SEQ_LEN, TEXT_CLASSES = 64, 16, 4
SAMPLE_RATE, CLIP_SAMPLES, N_FFT, HOP, N_MELS = 4000, 2000, 256, 64, 20
AUDIO_CLASSES = ("low_tone", "high_tone", "up_chirp", "down_chirp", "noise_burst", "two_tone")


def token_sequences(seed: int, per_class: int = 400) -> DatasetSplits:
    """Class k: 2-4 keywords from its own set of 4 tokens, placed at random among noise tokens.

    Token 0 is never used (room for padding); keywords are 1..16, noise 17..VOCAB-1.
    """
    rng = np.random.default_rng(1000 + seed)
    x, y = [], []
    for label in range(TEXT_CLASSES):
        keywords = np.arange(1 + 4 * label, 5 + 4 * label)
        for _ in range(per_class):
            seq = rng.integers(17, VOCAB, SEQ_LEN)
            count = rng.integers(2, 5)
            seq[rng.choice(SEQ_LEN, count, replace=False)] = rng.choice(keywords, count)
            x.append(seq)
            y.append(label)
    return split({"tokens": np.asarray(x, dtype=np.int64)}, np.asarray(y, dtype=np.int64), seed)


def keyword_audio(seed: int, per_class: int = 200) -> DatasetSplits:
    """Log-mel features (1 x N_MELS x frames) of seeded tones, chirps and noise, standardised."""
    rng = np.random.default_rng(2000 + seed)
    waves, labels = [], []
    for label, kind in enumerate(AUDIO_CLASSES):
        for _ in range(per_class):
            waves.append(_clip(kind, rng))
            labels.append(label)
    import torch

    feats = log_mel(torch.from_numpy(np.asarray(waves, dtype=np.float32))).numpy()[:, None]
    feats = ((feats - feats.mean()) / feats.std()).astype(np.float32)
    return split({"features": feats}, np.asarray(labels, dtype=np.int64), seed)


def noisy_digits(seed: int, noise: float = 0.3) -> DatasetSplits:
    """Digits plus seeded Gaussian noise (clipped to [0, 1]) as input; the clean digits as target."""
    clean, labels = digits_images()
    noisy = np.clip(clean + np.random.default_rng(3000 + seed).normal(0, noise, clean.shape), 0, 1)
    s = split({"noisy": noisy.astype(np.float32), "clean": clean}, labels, seed)
    pick = lambda x: {"noisy": x["noisy"]}  # noqa: E731
    return DatasetSplits(
        pick(s.x_train), s.x_train["clean"], pick(s.x_val), s.x_val["clean"], pick(s.x_test), s.x_test["clean"]
    )


def log_mel(waves: torch.Tensor) -> torch.Tensor:
    """log(mel power + 1e-6) of a batch of waveforms: (batch, N_MELS, frames)."""
    import torch

    spec = torch.stft(waves, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs() ** 2
    return torch.log(torch.einsum("mf,bft->bmt", mel_filterbank(), spec) + 1e-6)


def mel_filterbank() -> torch.Tensor:
    """Triangular filters evenly spaced on the mel scale: (N_MELS, N_FFT // 2 + 1)."""
    to_mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    to_hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = to_hz(np.linspace(to_mel(0), to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    bank = np.zeros((N_MELS, len(freqs)))
    for m in range(N_MELS):
        lo, mid, hi = edges[m : m + 3]
        bank[m] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    import torch

    return torch.tensor(bank, dtype=torch.float32)


def _clip(kind: str, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    duration = t[-1]
    if kind == "low_tone":
        wave = np.sin(2 * np.pi * rng.uniform(250, 500) * t)
    elif kind == "high_tone":
        wave = np.sin(2 * np.pi * rng.uniform(1100, 1600) * t)
    elif kind in ("up_chirp", "down_chirp"):
        f0, f1 = rng.uniform(200, 500), rng.uniform(1200, 1800)
        if kind == "down_chirp":
            f0, f1 = f1, f0
        wave = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * duration)))
    elif kind == "noise_burst":
        wave = np.zeros_like(t)
        start = rng.integers(0, CLIP_SAMPLES // 2)
        wave[start : start + CLIP_SAMPLES // 3] = rng.normal(0, 0.7, len(wave[start : start + CLIP_SAMPLES // 3]))
    else:
        wave = 0.5 * (np.sin(2 * np.pi * rng.uniform(300, 450) * t) + np.sin(2 * np.pi * rng.uniform(900, 1100) * t))
    return (rng.uniform(0.3, 1.0) * wave + rng.normal(0, rng.uniform(0.05, 0.3), len(t))).astype(np.float32)
