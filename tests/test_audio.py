"""AudioFeatures, LogMelSpectrogram and load_audio on WAV files, bytes and arrays."""

import io
import pickle
import warnings
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import StandardScaler

import mmsk._audio_load
import mmsk.audio
from mmsk import AudioFeatures, ItemError, ItemWarning, LogMelSpectrogram
from mmsk._base import BadItem
from mmsk.audio import load_audio

SR = 8000
FAST = dict(sr=SR, n_mfcc=8, n_mels=16, n_fft=256, hop_length=64)
FAST_MEL = dict(sr=SR, n_mels=16, n_frames=12, n_fft=256, hop_length=64)


def tone(freq, seconds=0.25, sr=SR, amplitude=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def audio(tmp_path_factory):
    """WAV files of every kind (8 kHz, 0.25 s), plus broken ones."""
    folder = tmp_path_factory.mktemp("audio")
    out = {}
    for freq in (220, 440, 880):
        out[f"tone_{freq}"] = str(folder / f"tone_{freq}.wav")
        sf.write(out[f"tone_{freq}"], tone(freq), SR, subtype="PCM_16")
    out["stereo"] = str(folder / "stereo.wav")
    sf.write(out["stereo"], np.stack([tone(440), tone(440)], axis=1), SR, subtype="PCM_16")
    out["tone_440_16k"] = str(folder / "tone_440_16k.wav")
    sf.write(out["tone_440_16k"], tone(440, sr=16000), 16000, subtype="PCM_16")
    out["float"] = str(folder / "tone_440_float.wav")
    sf.write(out["float"], tone(440), SR, subtype="FLOAT")
    out["empty"] = str(folder / "empty.wav")
    sf.write(out["empty"], np.zeros(0, dtype=np.float32), SR)
    data = Path(out["tone_440"]).read_bytes()
    out["truncated"] = str(folder / "truncated.wav")
    Path(out["truncated"]).write_bytes(data[: len(data) // 2])
    out["header_cut"] = str(folder / "header_cut.wav")
    Path(out["header_cut"]).write_bytes(data[:30])
    out["corrupt"] = str(folder / "corrupt.wav")
    Path(out["corrupt"]).write_bytes(np.random.RandomState(0).bytes(1000))
    out["zero_bytes"] = str(folder / "zero_bytes.wav")
    Path(out["zero_bytes"]).write_bytes(b"")
    return out


@pytest.fixture(scope="module")
def tones(audio):
    return [audio["tone_220"], audio["tone_440"], audio["tone_880"]]


def column(first, second, bad):
    """A named column whose row 2 is the bad item."""
    return pd.Series([first, second, bad], name="audio")


# -- output and names --------------------------------------------------------------


def test_default_output_shape_dtype_and_names(tones):
    est = AudioFeatures(sr=SR)
    X = est.fit_transform(tones)
    names = est.get_feature_names_out()
    # 20 mfcc + 20 deltas + 64 mel + 10 spectral + 12 chroma + zcr + rms, times mean and std
    assert X.shape == (3, 256) == (3, est.n_features_out_) == (3, len(names))
    assert X.dtype == np.float32 and np.isfinite(X).all()
    assert len(set(names)) == len(names)
    for name in [
        "mfcc_03_mean",
        "mfcc_delta_03_std",
        "melspec_12_mean",
        "spectral_centroid_mean",
        "spectral_bandwidth_std",
        "spectral_contrast_02_mean",
        "spectral_rolloff_mean",
        "spectral_flatness_mean",
        "chroma_05_mean",
        "zcr_mean",
        "rms_std",
    ]:
        assert name in names
    assert names[:3].tolist() == ["mfcc_00_mean", "mfcc_00_std", "mfcc_01_mean"]


def test_groups_and_stats_select_and_order_the_output(tones):
    est = AudioFeatures(sr=SR, features=("rms", "zcr"), stats=("max", "q10", "median"))
    X = est.fit_transform(tones)
    assert est.get_feature_names_out().tolist() == [
        "rms_max",
        "rms_q10",
        "rms_median",
        "zcr_max",
        "zcr_q10",
        "zcr_median",
    ]
    assert X.shape == (3, 6)
    assert (X[:, 1] <= X[:, 2]).all() and (X[:, 2] <= X[:, 0]).all()
    # a single name works as a one-element sequence
    assert AudioFeatures(sr=SR, features="zcr", stats="mean").fit(tones).n_features_out_ == 1


def test_pooling_statistics_are_ordered(tones):
    est = AudioFeatures(**FAST, stats=("min", "q10", "median", "mean", "q90", "max"))
    X = est.fit_transform(tones).reshape(3, -1, 6)
    lo, q10, med, mean, q90, hi = np.moveaxis(X, -1, 0)
    tol = 1e-4 * (1 + np.abs(X).max())
    assert (lo <= q10 + tol).all() and (q10 <= med + tol).all() and (med <= q90 + tol).all()
    assert (q90 <= hi + tol).all() and (lo <= mean + tol).all() and (mean <= hi + tol).all()


def test_index_width_grows_with_the_count(tones):
    est = AudioFeatures(sr=SR, features=("melspec",), stats=("mean",), n_mels=128).fit(tones)
    assert est.get_feature_names_out()[[0, -1]].tolist() == ["melspec_000_mean", "melspec_127_mean"]


# -- behaviour ---------------------------------------------------------------------


def test_higher_tone_has_higher_centroid_and_zcr(tones):
    est = AudioFeatures(sr=SR, features=("spectral", "zcr"), stats=("mean",))
    X = pd.DataFrame(est.fit_transform(tones), columns=est.get_feature_names_out())
    assert X["spectral_centroid_mean"].is_monotonic_increasing
    assert X["zcr_mean"].is_monotonic_increasing


def test_chroma_of_a440_peaks_at_pitch_class_a(audio):
    est = AudioFeatures(sr=SR, features=("chroma",), stats=("mean",))
    X = est.fit_transform([audio["tone_440"]])
    assert est.get_feature_names_out()[X[0].argmax()] == "chroma_09_mean"  # C=0, ..., A=9


def test_louder_clip_has_more_rms():
    est = AudioFeatures(sr=SR, features=("rms",), stats=("mean",))
    quiet, loud = est.fit_transform([tone(440, amplitude=0.1), tone(440, amplitude=0.8)])
    assert loud[0] > 4 * quiet[0]


def test_frame_features_match_plain_librosa_calls(audio):
    """The cached filter banks give what librosa.feature's own functions give."""
    y, sr = load_audio(audio["tone_440"], SR)
    est = AudioFeatures(sr=SR, features=("melspec", "chroma", "mfcc"), n_fft=512, hop_length=128)
    frames = mmsk.audio._frame_features(y, sr, est)
    S = np.abs(librosa.stft(y, n_fft=512, hop_length=128))
    log_mel = librosa.power_to_db(
        librosa.feature.melspectrogram(S=S**2, sr=sr, n_fft=512, n_mels=64)
    )
    chroma = librosa.feature.chroma_stft(S=S**2, sr=sr, n_fft=512, tuning=0.0)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=20)
    np.testing.assert_allclose(
        frames, np.concatenate([log_mel, chroma, mfcc]), rtol=1e-4, atol=1e-3
    )


def test_resampling_changes_nothing_for_a_clip_already_at_sr(audio):
    kw = dict(FAST, sr=None)
    native = AudioFeatures(**kw).fit_transform([audio["tone_440"]])
    at_sr = AudioFeatures(**FAST).fit_transform([audio["tone_440"]])
    np.testing.assert_array_equal(native, at_sr)


def test_a_16khz_file_is_resampled_to_sr(audio):
    y, sr = load_audio(audio["tone_440_16k"], SR)
    assert sr == SR and y.shape == (2000,) and y.dtype == np.float32
    est = AudioFeatures(sr=SR, features=("spectral",), stats=("mean",))
    X = est.fit_transform([audio["tone_440"], audio["tone_440_16k"]])
    np.testing.assert_allclose(X[0, 0], X[1, 0], rtol=0.05)  # same centroid
    y, sr = load_audio(audio["tone_440_16k"], None)
    assert sr == 16000 and y.shape == (4000,)


def test_stereo_is_mixed_to_mono(audio):
    est = AudioFeatures(**FAST)
    X = est.fit_transform([audio["tone_440"], audio["stereo"]])
    np.testing.assert_array_equal(X[0], X[1])
    y, _ = load_audio(audio["stereo"], SR, mono=False)
    assert y.shape == (2, 2000)


def test_short_and_silent_clips_give_finite_features_without_warnings():
    clips = [np.zeros(4000, np.float32), tone(440)[:100], tone(440)[:1], tone(440)[:2047]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X = AudioFeatures(sr=SR).fit_transform(clips)
        M = LogMelSpectrogram(sr=SR).fit_transform(clips)
    assert np.isfinite(X).all() and np.isfinite(M).all()
    assert (M[0] == -80).all()  # digital silence is the floor


# -- item kinds and input forms ----------------------------------------------------


def test_every_item_kind_gives_the_same_row(audio):
    path = audio["tone_440"]
    data = Path(path).read_bytes()
    wave, _ = sf.read(path, dtype="float32")
    pcm, _ = sf.read(path, dtype="int16")
    items = [path, Path(path), data, bytearray(data), wave, pcm, np.stack([wave, wave])]
    X = AudioFeatures(**FAST).fit_transform(items)
    for row in X[1:]:
        np.testing.assert_allclose(row, X[0], rtol=1e-5, atol=1e-4)
    assert load_audio(io.BytesIO(data), SR)[0].shape == (2000,)


def test_missing_items_give_nan_rows(audio):
    X = AudioFeatures(**FAST).fit_transform([audio["tone_440"], None, np.nan, pd.NA])
    assert np.isfinite(X[0]).all() and np.isnan(X[1:]).all()


@pytest.mark.parametrize("est", [AudioFeatures(**FAST), LogMelSpectrogram(**FAST_MEL)])
def test_one_d_and_one_column_inputs_agree(tones, est):
    ref = clone(est).fit_transform(tones)
    for X in [
        np.array(tones, dtype=object),
        pd.Series(tones, name="audio"),
        pd.DataFrame({"audio": tones}),
        np.array(tones, dtype=object).reshape(-1, 1),
        [[t] for t in tones],
    ]:
        np.testing.assert_array_equal(clone(est).fit_transform(X), ref)


def test_inside_a_column_transformer_with_pandas_output(tones):
    df = pd.DataFrame({"audio": tones, "age": [1.0, 2.0, 3.0]})
    ct = ColumnTransformer(
        [
            ("audio", AudioFeatures(**FAST, features=("mfcc", "rms")), "audio"),
            ("mel", LogMelSpectrogram(**FAST_MEL), "audio"),
            ("num", StandardScaler(), ["age"]),
        ]
    ).set_output(transform="pandas")
    out = ct.fit_transform(df)
    assert out.shape == (3, 8 * 2 + 2 + 16 * 12 + 1)
    assert out.columns[0] == "audio__mfcc_00_mean"
    assert "audio__rms_std" in out.columns and "mel__logmel_15_011" in out.columns
    assert out.columns[-1] == "num__age"


# -- scikit-learn contract ---------------------------------------------------------


@pytest.mark.parametrize("est", [AudioFeatures(**FAST), LogMelSpectrogram(**FAST_MEL)])
def test_clone_params_and_pickle_round_trip(tones, est):
    params = est.get_params()
    copy = clone(est)
    assert copy.get_params() == params
    copy.set_params(n_mels=8)
    assert copy.n_mels == 8 and est.n_mels == 16
    est = clone(est).fit(tones)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.transform(tones), est.transform(tones))
    assert again.get_feature_names_out().tolist() == est.get_feature_names_out().tolist()


@pytest.mark.parametrize("est", [AudioFeatures(**FAST), LogMelSpectrogram(**FAST_MEL)])
def test_n_jobs_two_equals_one(tones, audio, est):
    items = tones * 3 + [None, audio["stereo"]]
    one = clone(est).fit_transform(items)
    two = clone(est).set_params(n_jobs=2).fit_transform(items)
    np.testing.assert_array_equal(one, two)


def test_verbose_shows_a_progress_bar(tones, capsys):
    AudioFeatures(**FAST, verbose=1).fit_transform(tones)
    assert "AudioFeatures" in capsys.readouterr().err


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(features=("mfcc", "pitch")), r"unknown feature group.*'pitch'.*'mfcc_delta'"),
        (dict(features=()), "features must name at least one"),
        (dict(features=("mfcc", "mfcc")), "repeated"),
        (dict(stats=("mean", "mode")), r"unknown statistic.*'mode'.*'q1'"),
        (dict(stats=("q0",)), "unknown statistic"),
        (dict(stats=("q100",)), "unknown statistic"),
        (dict(stats=3), "stats must be a sequence"),
        (dict(sr=0), "sr must be an int >= 1"),
        (dict(sr=8000.5), "sr must be an int"),
        (dict(n_mfcc=0), "n_mfcc"),
        (dict(n_mfcc=80), "n_mfcc=80 cannot exceed n_mels=64"),
        (dict(n_mels=True), "n_mels"),
        (dict(n_fft="2048"), "n_fft"),
        (dict(hop_length=-1), "hop_length"),
        (dict(fmin=-1.0), "fmin"),
        (dict(fmax=5000.0), "fmax=5000.0 must not exceed the Nyquist"),
        (dict(fmin=300.0, fmax=200.0), "fmax must be a number > 300"),
        (dict(n_bands=6), r"n_bands=6 is too many for sr=8000.*n_bands <= 5"),
        (dict(n_mels=128, n_fft=64), r"n_mels=128 is too many for n_fft=64 .* empty"),
        (dict(on_error="skip"), "on_error"),
        (dict(n_jobs="2"), "n_jobs"),
        (dict(memory=3), "memory"),
    ],
)
def test_bad_parameters_raise_in_fit_not_init(tones, params, match):
    est = AudioFeatures(sr=SR).set_params(**params)  # stored as given
    with pytest.raises(ValueError, match=match):
        est.fit(tones)


def test_parameters_are_checked_against_the_rate_only_when_known(tones):
    AudioFeatures(sr=None, n_bands=6, fmax=6000.0).fit(tones)  # checked per clip instead
    with pytest.raises(ItemError, match=r"spectral contrast allows n_bands <= 5"):
        AudioFeatures(sr=None, n_bands=6).fit_transform(tones)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(n_frames=0), "n_frames"),
        (dict(top_db=0), "top_db"),
        (dict(top_db=None), "top_db"),
        (dict(pad_mode="reflect"), "pad_mode"),
        (dict(crop="end"), "crop"),
        (dict(n_mels=0), "n_mels"),
        (dict(fmax=4001), "fmax"),
        (dict(n_mels=128, n_fft=64), "mel filters would be empty"),
    ],
)
def test_log_mel_bad_parameters_raise_in_fit(tones, params, match):
    est = LogMelSpectrogram(sr=SR).set_params(**params)
    with pytest.raises(ValueError, match=match):
        est.fit(tones)


# -- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [
        ("missing", r"audio: row 2 \('no_such\.wav'\): file not found"),
        ("corrupt", r"audio: row 2 \('.*corrupt\.wav'\): cannot decode audio: Format not recog"),
        ("header_cut", r"audio: row 2 \('.*header_cut\.wav'\): cannot decode audio"),
        ("truncated", r"audio: row 2 \('.*truncated\.wav'\): truncated file: .* promises 4000"),
        ("empty", r"audio: row 2 \('.*empty\.wav'\): empty audio \(0 samples\)"),
        ("zero_bytes", r"audio: row 2 \('.*zero_bytes\.wav'\): empty file \(0 bytes\)"),
        ("int", r"audio: row 2 \(7\): unsupported item type int; expected a path"),
        ("random_bytes", r"audio: row 2 \(<64 bytes>\): cannot decode audio"),
        ("empty_bytes", r"audio: row 2 \(<0 bytes>\): .*empty"),
        ("nan_wave", r"audio: row 2 \(<ndarray .*\): audio holds non-finite samples"),
        ("empty_wave", r"audio: row 2 \(<ndarray .*\): empty audio"),
        ("3d_wave", r"audio: row 2 \(<ndarray .*\): a waveform array must be 1-D"),
        ("transposed", r"must be \(channels, samples\) as in librosa.*transpose"),
        ("uint8_wave", r"must hold floats .* got dtype uint8"),
        ("list", r"unsupported item type list"),
    ],
)
@pytest.mark.parametrize("cls", [AudioFeatures, LogMelSpectrogram])
def test_unreadable_items_name_column_row_and_item(audio, tmp_path, monkeypatch, bad, match, cls):
    monkeypatch.chdir(tmp_path)  # a short relative path: long ones are abbreviated in messages
    wave = tone(440)
    items = {
        "missing": "no_such.wav",
        "int": 7,
        "random_bytes": np.random.RandomState(1).bytes(64),
        "empty_bytes": b"",
        "nan_wave": np.where(np.arange(2000) == 5, np.nan, wave),
        "empty_wave": np.zeros(0, np.float32),
        "3d_wave": np.zeros((1, 2, 100), np.float32),
        "transposed": np.stack([wave, wave], axis=1),
        "uint8_wave": np.zeros(100, np.uint8),
        "list": [0.0, 0.1],
    }
    item = items.get(bad, audio.get(bad))
    X = column(audio["tone_220"], audio["tone_440"], item)
    est = cls(sr=SR)
    with pytest.raises(ItemError, match=match):
        est.fit_transform(X)
    with pytest.warns(ItemWarning, match=r"audio: 1 of 3 audio items could not be read") as rec:
        out = est.set_params(on_error="nan").fit_transform(X)
    assert len([w for w in rec if issubclass(w.category, ItemWarning)]) == 1
    assert np.isnan(out[2]).all() and np.isfinite(out[:2]).all()


def test_waveform_without_sr_is_refused():
    with pytest.raises(ItemError, match=r"row 0 .*no sampling rate of its own: set sr="):
        AudioFeatures(sr=None).fit_transform([tone(440)])


def test_load_audio_errors_are_bad_items(audio):
    with pytest.raises(BadItem, match="truncated file"):
        load_audio(audio["truncated"], SR)
    with pytest.raises(BadItem, match="cannot decode audio"):
        load_audio(b"RIFF....WAVEfmt ", SR)
    # a stated length of "unknown" (streaming writers) is not truncation
    mmsk._audio_load._check_not_truncated("data : 4294967295 (should be 1978)\n")


def test_an_open_file_is_decoded_by_descriptor_and_left_open(audio, monkeypatch):
    seen = []
    real = mmsk._audio_load.sf.SoundFile

    def recording(file, *args, **kwargs):
        seen.append(type(file).__name__)
        return real(file, *args, **kwargs)

    monkeypatch.setattr(mmsk._audio_load.sf, "SoundFile", recording)
    data = Path(audio["tone_440"]).read_bytes()
    with open(audio["tone_440"], "rb") as fh:
        y, sr = load_audio(fh, SR)
        assert not fh.closed  # libsndfile did not close the caller's descriptor
    expected, _ = load_audio(data, SR)  # bytes: through soundfile's Python I/O
    assert seen == ["int", "BytesIO"]
    np.testing.assert_array_equal(y, expected)
    with open(audio["truncated"], "rb") as fh:  # the log-based checks hold by descriptor
        with pytest.raises(BadItem, match="truncated file"):
            load_audio(fh, SR)


# -- cache -------------------------------------------------------------------------


@pytest.mark.parametrize("cls, kw", [(AudioFeatures, FAST), (LogMelSpectrogram, FAST_MEL)])
def test_memory_extracts_each_item_once(tones, tmp_path, monkeypatch, cls, kw):
    calls = []
    original = mmsk.audio.load_audio
    monkeypatch.setattr(
        mmsk.audio, "load_audio", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    est = cls(**kw, memory=tmp_path)
    first = est.fit_transform(tones)
    second = est.transform(tones)
    third = clone(est).fit_transform(list(reversed(tones)))
    assert len(calls) == 3
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, third[::-1])
    cls(**kw, memory=tmp_path).set_params(n_mels=8).fit_transform(tones)  # another output
    assert len(calls) == 6


def test_features_are_computed_once_per_item_without_cache(tones, monkeypatch):
    calls = []
    original = mmsk.audio._clip_features
    monkeypatch.setattr(mmsk.audio, "_clip_features", lambda *a: calls.append(1) or original(*a))
    AudioFeatures(**FAST).fit_transform(tones + [None])
    assert len(calls) == 3


# -- LogMelSpectrogram -------------------------------------------------------------


def test_log_mel_shape_names_and_range(tones):
    est = LogMelSpectrogram(**FAST_MEL)
    X = est.fit_transform(tones)
    assert X.shape == (3, 16 * 12) and X.dtype == np.float32
    assert est.output_shape_ == (1, 16, 12)
    names = est.get_feature_names_out()
    assert names[:2].tolist() == ["logmel_00_000", "logmel_00_001"]
    assert names[12] == "logmel_01_000" and names[-1] == "logmel_15_011"
    assert X.max() <= 0 and X.min() >= -80 and np.isclose(X.max(axis=1), 0, atol=1e-4).all()


def test_log_mel_image_is_librosa_log_mel_row_major(audio):
    # 0.25 s at hop 64 -> 32 frames; keep the first 20
    est = LogMelSpectrogram(**dict(FAST_MEL, n_frames=20), crop="start")
    image = est.fit_transform([audio["tone_440"]]).reshape(-1, *est.output_shape_)[0, 0]
    y, _ = sf.read(audio["tone_440"], dtype="float32")
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=256, hop_length=64, n_mels=16)
    expected = librosa.power_to_db(mel, ref=np.max, top_db=80.0)[:, :20]
    np.testing.assert_allclose(image, expected, rtol=1e-4, atol=1e-3)


def test_log_mel_crop_and_pad():
    rng = np.random.RandomState(0)
    y = (rng.randn(SR) * np.linspace(0.01, 1, SR)).astype(np.float32)  # 126 frames
    full = LogMelSpectrogram(**dict(FAST_MEL, n_frames=126)).fit_transform([y]).reshape(16, 126)
    assert not np.isclose(full, -80).all(axis=0).any()  # no padding needed

    def image(**kw):
        est = LogMelSpectrogram(**dict(FAST_MEL, n_frames=10), **kw)
        return est.fit_transform([y]).reshape(16, 10)

    np.testing.assert_array_equal(image(crop="start"), full[:, :10])
    np.testing.assert_array_equal(image(crop="center"), full[:, 58:68])
    short = y[: 64 * 5]  # 6 frames
    base = LogMelSpectrogram(**dict(FAST_MEL, n_frames=6)).fit_transform([short]).reshape(16, 6)
    padded = LogMelSpectrogram(**FAST_MEL).fit_transform([short]).reshape(16, 12)
    np.testing.assert_array_equal(padded[:, :6], base)
    assert (padded[:, 6:] == -80).all()
    wrapped = LogMelSpectrogram(**FAST_MEL, pad_mode="wrap").fit_transform([short]).reshape(16, 12)
    np.testing.assert_array_equal(wrapped, np.concatenate([base, base], axis=1))
    lower = LogMelSpectrogram(**FAST_MEL, top_db=40).fit_transform([short])
    assert lower.min() == -40


# -- real recordings ---------------------------------------------------------------


def test_real_spoken_digits(shared_data):
    folder = shared_data / "fsdd" / "recordings"
    paths = [str(folder / f"{d}_jackson_0.wav") for d in range(5)]
    est = AudioFeatures(sr=SR)
    X = est.fit_transform(paths)
    assert X.shape == (5, 256) and np.isfinite(X).all()
    assert len(np.unique(X[:, 0])) == 5  # five different clips
    mel = LogMelSpectrogram(sr=SR, n_frames=16).fit_transform(paths)
    assert mel.shape == (5, 64 * 16) and np.isfinite(mel).all()
    assert np.isclose(mel.max(axis=1), 0, atol=1e-4).all()  # float32 rounding of the 0 dB peak
