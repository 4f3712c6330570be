"""AudioEmbedder: windows, pooling, sample formats, models of every kind, cache, pickling.

The models are tiny torch modules made here, exported to ONNX where a test
needs a file. The openwakeword tests run its speech embedding on the shipped
sample's clips; they skip when openwakeword 0.4.0 (which ships the models,
CC BY-NC-SA 4.0) is not installed.
"""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from sklearn.base import clone

import mmsk.audio_embed
from mmsk import AudioEmbedder, ItemError, ItemWarning
from mmsk.audio_embed import Rescale

torch = pytest.importorskip("torch")
nn = torch.nn

SR = 8000
WINDOW, HOP = 400, 200  # 50 ms windows every 25 ms at 8 kHz


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FrameNet(nn.Module):
    """``(batch, samples)`` -> ``(batch, samples // 16, 4)``: a Linear on frames of 16 samples."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(16, 4)

    def forward(self, x):
        return self.linear(x.reshape(x.shape[0], -1, 16))


def frame_net(seed=0):
    torch.manual_seed(seed)
    return FrameNet()


class MelLike(nn.Module):
    """An openwakeword-like front end: ``(batch, 400)`` -> ``(batch, 1, 25, 16)``, no weights."""

    def forward(self, x):
        return torch.log1p(x.abs()).reshape(x.shape[0], 1, 25, 16)


class Encoder(nn.Module):
    """An openwakeword-like encoder: ``(batch, 25, 16, 1)`` -> ``(batch, 1, 1, 3)``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.linear = nn.Linear(25 * 16, 3)

    def forward(self, x):
        return self.linear(x.reshape(x.shape[0], -1)).reshape(x.shape[0], 1, 1, 3)


def window_peak(x):
    """A function stage: each window's largest absolute sample, as one 1-value frame."""
    return np.abs(x).max(axis=1, keepdims=True)


def window_shape(x):
    """A function stage: each window's length and the position of its first non-zero sample."""
    first = np.argmax(x != 0, axis=1)
    return np.stack([np.full(len(x), x.shape[1]), first], axis=1).astype(np.float32)


def batch_normalised(x):
    """A function stage that divides by the batch's largest value (as openwakeword's mel does)."""
    return np.abs(x).max(axis=1, keepdims=True) / (np.abs(x).max() + 1e-12)


def tone(freq, seconds=0.25, sr=SR, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def clips():
    return [tone(220), tone(440, 0.4), tone(880, 0.03), tone(660, 1.0, amp=0.1)]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """FrameNet (seed 0), the front end and the encoder as ONNX files."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        return _export_models(tmp_path_factory.mktemp("audio_models"))


def _export_models(folder):
    net = frame_net(0).eval()
    example = torch.zeros(1, WINDOW)
    files = {"onnx": folder / "frame_net.onnx"}
    torch.onnx.export(
        net,
        (example,),
        files["onnx"],
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )
    files["front"] = folder / "front.onnx"
    files["encoder"] = folder / "encoder.onnx"
    torch.onnx.export(
        MelLike(),
        (example,),
        files["front"],
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
        dynamo=False,
    )
    torch.onnx.export(
        Encoder().eval(),
        (torch.zeros(1, 25, 16, 1),),
        files["encoder"],
        input_names=["input_1"],
        dynamic_axes={"input_1": {0: "batch"}},
        dynamo=False,
    )
    return {k: str(v) for k, v in files.items()}


def windows_by_hand(y, window=WINDOW, hop=HOP):
    """Windows every ``hop``, the last one zero-padded; a short clip centred in one window."""
    n = len(y)
    if n < window:
        before = (window - n) // 2
        return np.pad(y, (before, window - n - before))[None]
    count = 1 + int(np.ceil((n - window) / hop))
    y = np.pad(y, (0, (count - 1) * hop + window - n))
    return np.stack([y[i * hop : i * hop + window] for i in range(count)])


def frame_net_by_hand(y, net, pooling=("mean",)):
    with torch.no_grad():
        frames = net(torch.from_numpy(windows_by_hand(y))).reshape(-1, 4).double().numpy()
    ops = {"mean": np.mean, "max": np.max, "min": np.min, "std": np.std}
    return np.concatenate([ops[p](frames, axis=0) for p in pooling])


def embedder(**params):
    base = dict(model=frame_net(0), sr=SR, window=WINDOW, hop=HOP)
    return AudioEmbedder(**{**base, **params})


# -- pooling, windows, names --------------------------------------------------------


def test_pooling_shapes_names_and_values(clips):
    net = frame_net(0)
    one = embedder(model=net).fit(clips)
    assert one.transform(clips).shape == (4, 4) and one.embedding_dim_ == 4
    assert one.get_feature_names_out().tolist() == [f"emb_mean_{i:03d}" for i in range(4)]
    pooling = ["mean", "max", "std", "min"]
    est = embedder(model=net, pooling=pooling).fit(clips)
    X = est.transform(clips)
    assert X.shape == (4, 16) and X.dtype == np.float32
    names = est.get_feature_names_out().tolist()
    assert names[4] == "emb_max_000" and names[-1] == "emb_min_003" and len(set(names)) == 16
    for i, clip in enumerate(clips):
        expected = frame_net_by_hand(clip, net, pooling)
        np.testing.assert_allclose(X[i], expected, rtol=1e-4, atol=1e-5)
    mean, peak, std, low = X.reshape(4, 4, 4).transpose(1, 0, 2)
    assert (peak >= mean).all() and (low <= mean).all() and (std >= 0).all()


def test_windows_cover_the_clip_and_seconds_equal_samples():
    est = AudioEmbedder(model=window_shape, sr=SR, window=WINDOW, hop=HOP, pooling=["max", "min"])
    long_clip = np.ones(1000, dtype=np.float32)  # windows at 0, 200, 400, 600 (padded)
    X = est.fit_transform([long_clip])
    assert X[0].tolist() == [WINDOW, 0, WINDOW, 0]
    seconds = clone(est).set_params(window=0.05, hop=0.025).fit(["unused"])
    assert (seconds.window_, seconds.hop_) == (WINDOW, HOP)
    np.testing.assert_array_equal(seconds.transform([long_clip]), X)
    no_hop = clone(est).set_params(hop=None).fit([long_clip])
    assert no_hop.hop_ == WINDOW


def test_short_clips_are_padded_centre_or_start():
    short = np.ones(100, dtype=np.float32)
    centre = AudioEmbedder(model=window_shape, sr=SR, window=WINDOW).fit_transform([short])
    start = AudioEmbedder(model=window_shape, sr=SR, window=WINDOW, pad="start").fit_transform(
        [short]
    )
    assert centre[0].tolist() == [WINDOW, 150] and start[0].tolist() == [WINDOW, 0]


def test_whole_clips_without_window(clips):
    est = AudioEmbedder(model=window_shape, sr=SR).fit(clips)
    X = est.transform(clips)
    assert est.window_ is None
    assert X[:, 0].tolist() == [len(c) for c in clips]


# -- sample formats and rates --------------------------------------------------------


def test_int16_scaling_and_int16_items():
    y = tone(440, amp=0.5)
    floats = AudioEmbedder(model=window_peak, sr=SR, window=WINDOW)
    ints = clone(floats).set_params(dtype="int16")
    assert floats.fit_transform([y])[0, 0] == pytest.approx(0.5, abs=1e-3)
    assert ints.fit_transform([y])[0, 0] == pytest.approx(16384, abs=40)
    pcm = np.round(y * 32767).astype(np.int16)  # an int16 waveform item is PCM
    assert ints.transform([pcm])[0, 0] == pytest.approx(16384, abs=40)
    loud = AudioEmbedder(model=window_peak, sr=SR, dtype="int16").fit_transform([np.ones(50)])
    assert loud[0, 0] == 32767  # clipped, not wrapped


def test_files_are_resampled_to_sr(tmp_path):
    import librosa

    y = tone(440, seconds=0.5)
    path = tmp_path / "tone_8k.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    y16 = librosa.resample(y, orig_sr=SR, target_sr=16000, res_type="soxr_hq")
    est = AudioEmbedder(model=frame_net(0), sr=16000, window=800, hop=400).fit([path])
    from_file = est.transform([str(path)])
    np.testing.assert_allclose(from_file, est.transform([y16]), rtol=1e-5, atol=1e-6)
    lengths = AudioEmbedder(model=window_shape, sr=16000).fit_transform([str(path), y])
    assert lengths[:, 0].tolist() == [8000, 4000]  # the file is resampled, an array is not


# -- model kinds ---------------------------------------------------------------------


def test_onnx_file_module_and_factory_agree(clips, model_files, tmp_path):
    expected = embedder(model=frame_net(0)).fit_transform(clips)
    for model in (model_files["onnx"], frame_net):
        got = embedder(model=model).fit_transform(clips)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    other = embedder(model=frame_net(1)).fit_transform(clips)
    assert not np.allclose(other, expected)
    weights = tmp_path / "frame_net.pt"
    torch.save(frame_net(0).state_dict(), weights)
    with pytest.raises(ValueError, match="not an .onnx file"):
        embedder(model=str(weights)).fit(clips)


def test_pipeline_of_onnx_files_with_a_function_between(clips, model_files):
    est = AudioEmbedder(
        model=[model_files["front"], Rescale(0.5, 1.0), model_files["encoder"]],
        sr=SR,
        window=WINDOW,
        hop=HOP,
    ).fit(clips)
    X = est.transform(clips)
    assert X.shape == (4, 3) and np.isfinite(X).all()
    front, encoder = MelLike(), Encoder().eval()
    with torch.no_grad():
        for i, clip in enumerate(clips):
            w = torch.from_numpy(windows_by_hand(clip))
            x = front(w) * 0.5 + 1.0  # (n, 1, 25, 16) -> the encoder's (n, 25, 16, 1)
            frames = encoder(x.reshape(len(w), 25, 16, 1)).reshape(-1, 3).numpy()
            np.testing.assert_allclose(X[i], frames.mean(axis=0), rtol=1e-4, atol=1e-5)


def test_user_module_is_copied_not_changed(clips):
    net = frame_net(0).train()
    embedder(model=net).fit_transform(clips)
    assert net.training and all(p.requires_grad for p in net.parameters())


def test_clip_stages_make_a_clip_independent_of_its_batch():
    quiet, loud = tone(440, amp=0.01), tone(440, amp=0.9)
    plain = AudioEmbedder(model=[batch_normalised], sr=SR, window=WINDOW, hop=HOP)
    alone = plain.fit_transform([quiet])[0, 0]
    assert plain.transform([quiet, loud])[0, 0] < 0.5 * alone  # batch-dependent
    per_clip = clone(plain).set_params(clip_stages=1).fit([quiet])
    assert per_clip.transform([quiet, loud])[0, 0] == pytest.approx(alone)


def test_batch_size_does_not_change_the_output(clips):
    many = clips * 3
    one = embedder(batch_size=1).fit_transform(many)
    big = embedder(batch_size=100).fit_transform(many)
    np.testing.assert_allclose(one, big, rtol=1e-5, atol=1e-6)


# -- items, errors, parameters -------------------------------------------------------


def test_missing_and_bad_items(clips, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt ")
    column = pd.Series([clips[0], None, str(bad), np.nan], name="voice")
    est = embedder().fit(clips)
    with pytest.raises(ItemError, match=r"^voice: row 2 \('.*bad\.wav'\): cannot decode audio"):
        est.transform(column)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        X = clone(est).set_params(on_error="nan").fit(clips).transform(column)
    assert [w.category for w in caught] == [ItemWarning] and "1 of 4" in str(caught[0].message)
    assert np.isfinite(X[0]).all() and np.isnan(X[1:]).all()


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(model=None), "model is required"),
        (dict(model=[]), "empty list"),
        (dict(model=42), "model stage 1"),
        (dict(model="no/such/model.onnx"), "no such file"),
        (dict(dtype="int8"), "dtype"),
        (dict(window=0), "window"),
        (dict(window=None, hop=10), "hop needs window"),
        (dict(pad="left"), "pad"),
        (dict(pooling="median"), "pooling"),
        (dict(pooling=["mean", "mean"]), "pooling"),
        (dict(clip_stages=2), "clip_stages"),
        (dict(batch_size=0), "batch_size"),
        (dict(sr=0), "sr"),
    ],
)
def test_bad_parameters_raise_in_fit(params, match):
    est = embedder(**params)  # stored as given
    with pytest.raises(ValueError, match=match):
        est.fit(["x.wav"])


def test_model_output_without_batch_axis_is_explained():
    est = AudioEmbedder(model=lambda x: x.sum(), sr=SR, window=WINDOW)
    with pytest.raises(ValueError, match="batch axis"):
        est.fit(["x.wav"])


# -- laziness, pickling, cache -------------------------------------------------------


def test_lazy_loading_and_small_pickles(clips, model_files):
    est = embedder(model=model_files["onnx"])
    clone(est).set_params(pooling="max")
    assert "_loaded_model" not in vars(est)
    X = est.fit(clips).transform(clips)
    assert "_loaded_model" in vars(est)
    blob = pickle.dumps(est)
    assert len(blob) < 2000 and b"onnxruntime" not in blob
    again = pickle.loads(blob)
    assert "_loaded_model" not in vars(again)
    np.testing.assert_allclose(again.transform(clips), X, rtol=1e-6)
    assert "_loaded_model" in vars(again)
    # a module given as the parameter is pickled once, as the parameter; its loaded copy is not
    with_module = embedder(model=frame_net(0)).fit(clips)
    assert len(pickle.dumps(with_module)) < len(pickle.dumps(frame_net(0))) + 2000


def test_memory_embeds_each_clip_once(clips, tmp_path, monkeypatch):
    calls = []

    def counting(x):
        calls.append(len(x))
        return window_peak(x)

    decoded = []
    original = mmsk.audio_embed.load_audio
    monkeypatch.setattr(
        mmsk.audio_embed, "load_audio", lambda *a, **k: decoded.append(1) or original(*a, **k)
    )
    est = AudioEmbedder(model=counting, sr=SR, window=WINDOW, hop=HOP, memory=tmp_path)
    first = est.fit_transform(clips)
    n_calls, n_decoded = len(calls), len(decoded)
    assert n_decoded == len(clips)
    second = clone(est).fit_transform(list(reversed(clips)))
    assert (len(calls), len(decoded)) == (n_calls + 1, n_decoded)  # only fit's silent window
    np.testing.assert_array_equal(second, first[::-1])
    clone(est).set_params(pooling="max").fit_transform(clips)  # another output: misses
    assert len(decoded) == 2 * n_decoded


def test_import_is_cheap_and_onnx_models_run_without_torch(model_files):
    code = (
        "import sys, numpy as np, mmsk.audio_embed; "
        "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules; "
        "from mmsk import AudioEmbedder; "
        f"e = AudioEmbedder(model={model_files['onnx']!r}, sr=8000, window=400); "
        "X = e.fit_transform([np.ones(800, dtype='float32')]); "
        "assert X.shape == (1, 4) and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- openwakeword (optional) ---------------------------------------------------------


@pytest.fixture(scope="module")
def openwakeword_embedder():
    pytest.importorskip(
        "openwakeword", reason="openwakeword==0.4.0 (ships its CC BY-NC-SA models) not installed"
    )
    pytest.importorskip("onnxruntime", reason="onnxruntime (extra audio-embed) not installed")
    return AudioEmbedder.from_openwakeword(pooling=["mean", "max"])


def test_openwakeword_preset_without_the_package_says_what_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="openwakeword==0.4.0"):
        AudioEmbedder.from_openwakeword(models_dir=tmp_path)


def test_openwakeword_embeddings_separate_two_digits(openwakeword_embedder):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mmsk.datasets import load_sample

    sample = load_sample()
    keep = sample.target.isin([3, 8]).to_numpy()
    audio, y = sample.data["audio"][keep], sample.target[keep].to_numpy()
    emb = openwakeword_embedder
    X = emb.fit_transform(audio)
    assert emb.embedding_dim_ == 96 and X.shape == (keep.sum(), 192)
    assert np.isfinite(X).all()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    groups = sample.groups[keep].to_numpy()  # new speakers in every fold
    scores = cross_val_score(model, X, y, cv=GroupKFold(3), groups=groups)
    assert scores.mean() > 0.8  # chance is 0.5
