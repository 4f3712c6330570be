"""Resource limits: a small item that would cost unbounded memory or time is an item error.

An audio header that implies an enormous clip is refused before decoding
(``max_duration``, and the bound on decoded samples); a ``MemoryError``
while processing one item is that item's error, never the column's;
Pillow's decompression-bomb guard keeps working for images.
"""

import io

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from hostile_helpers import check_item_policy, within
from PIL import Image

import mmsk.audio
from mmsk import AudioFeatures, ImageFeatures, ImagePixels, ItemWarning, LogMelSpectrogram
from mmsk._files import NotRegularFile
from mmsk.audio import load_audio

AUDIO = dict(sr=8000, n_fft=256, hop_length=128)
AUDIO_EXTRACTORS = {
    "AudioFeatures": lambda **kw: AudioFeatures(n_mels=16, n_mfcc=8, **AUDIO, **kw),
    "LogMelSpectrogram": lambda **kw: LogMelSpectrogram(n_mels=16, n_frames=8, **AUDIO, **kw),
}


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """Small audio files whose headers imply far more than they cost to store."""
    folder = tmp_path_factory.mktemp("bombs")
    out = {}
    # 400 kB of 16-bit samples at 1 Hz: 55 hours, 1.6e9 samples after resampling to 8 kHz.
    out["one_hertz"] = str(folder / "one_hertz.wav")
    sf.write(out["one_hertz"], np.zeros(200_000, np.int16), 1, subtype="PCM_16")
    # 0.0125 s, but 200 channels: 20,000 samples to decode.
    out["channels"] = str(folder / "channels.wav")
    sf.write(out["channels"], np.zeros((100, 200), np.float32), 8000, subtype="PCM_16")
    out["long"] = str(folder / "long.wav")  # 2 s, plain
    sf.write(out["long"], np.zeros(16_000, np.float32), 8000)
    return out


def _tone(seconds=0.25, sr=8000, freq=440.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    "bomb, params, reason",
    [
        (
            "one_hertz",
            {},
            r"^audio of 200000\.0 s \(200000 frames at 1 Hz\), longer than the limit of 600 s "
            r"\(max_duration\); refused before decoding$",
        ),
        ("long", {"max_duration": 1.0}, r"^audio of 2\.0 s .*limit of 1 s \(max_duration\)"),
        ("channels", {"max_duration": 0.05}, r"x 200 channels .* 20000 samples to decode"),
        ("waveform", {"max_duration": 1.0}, r"^waveform of 3\.0 s \(24000 samples at sr=8000\)"),
    ],
)
@pytest.mark.parametrize("name", list(AUDIO_EXTRACTORS))
def test_audio_over_the_limits_is_refused_before_decoding(name, bomb, params, reason, bombs):
    factory = AUDIO_EXTRACTORS[name]
    item = _tone(3.0) if bomb == "waveform" else bombs[bomb]
    seconds = 0.01 if bomb == "channels" else 0.25  # good clips within the limit
    items = [_tone(seconds), item, _tone(seconds, freq=880.0)]
    within(15, check_item_policy, lambda **kw: factory(**params, **kw), items, [1], reason)


def test_the_header_bomb_never_reaches_the_decoder(bombs, monkeypatch):
    calls = []
    real = mmsk.audio.librosa.resample
    monkeypatch.setattr(
        mmsk.audio.librosa, "resample", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    with pytest.warns(ItemWarning, match=r"1 of 1 audio items .*max_duration"):
        out = AudioFeatures(**AUDIO, on_error="nan").fit_transform([bombs["one_hertz"]])
    assert calls == [] and out.shape == (1, AudioFeatures(**AUDIO).fit([]).n_features_out_)


@pytest.mark.parametrize("name", list(AUDIO_EXTRACTORS))
def test_max_duration_none_lifts_the_limit(name, bombs):
    est = AUDIO_EXTRACTORS[name](max_duration=None)
    assert np.isfinite(est.fit_transform([bombs["long"]])).all()
    with pytest.raises(ValueError, match="max_duration must be a number > 0"):
        AUDIO_EXTRACTORS[name](max_duration=0).fit([bombs["long"]])


def test_load_audio_keeps_the_limits(bombs, fifo):
    with pytest.raises(ValueError, match="longer than the limit of 600 s"):
        load_audio(bombs["one_hertz"], 8000)
    with pytest.raises(NotRegularFile, match="FIFO"):
        within(10, load_audio, fifo, 8000)
    with pytest.raises(ValueError, match=r"more than the limit of 100 \(max_file_bytes\)"):
        load_audio(bombs["long"], 8000, max_file_bytes=100)
    data = io.BytesIO(open(bombs["long"], "rb").read())
    with pytest.raises(ValueError, match="limit of 1 s"):
        load_audio(data, 8000, max_duration=1.0)


@pytest.mark.parametrize("name", list(AUDIO_EXTRACTORS))
def test_a_memory_error_is_the_item_s_error_not_the_column_s(name, monkeypatch):
    """The base class used to re-raise MemoryError, losing the whole column in both modes."""
    real = mmsk.audio.librosa.stft

    def stft(y, **kwargs):
        if y.shape[-1] == 4000:  # the 0.5 s clip "does not fit"
            raise MemoryError("Unable to allocate 7.45 GiB for an array of shape (1025, 10**9)")
        return real(y, **kwargs)

    monkeypatch.setattr(mmsk.audio.librosa, "stft", stft)
    items = [_tone(), _tone(0.5), _tone(freq=880.0)]
    reason = r"^ran out of memory processing it \(Unable to allocate"
    check_item_policy(AUDIO_EXTRACTORS[name], items, [1], reason)


@pytest.mark.parametrize("cls", [ImagePixels, ImageFeatures])
def test_pillow_s_decompression_bomb_guard_stays(cls, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 2 x 100 pixels: an error above
    small, big = io.BytesIO(), io.BytesIO()
    Image.new("L", (10, 10)).save(small, format="PNG")
    Image.new("L", (30, 30)).save(big, format="PNG")
    items = [small.getvalue(), big.getvalue(), small.getvalue()]
    make = lambda **kw: cls(size=(16, 16), mode="L", **kw)  # noqa: E731
    check_item_policy(make, items, [1], r"DecompressionBombError.*900 pixels")


def test_limits_do_not_change_the_cache_key(tmp_path):
    """The limits say which items are read, not what an item gives."""
    items = pd.Series([_tone(), _tone(freq=880.0)], name="a")
    loose = AudioFeatures(**AUDIO, memory=tmp_path, max_duration=None)
    tight = AudioFeatures(**AUDIO, memory=tmp_path, max_duration=1.0, max_file_bytes=10**6)
    assert loose._cache_token(8) == tight._cache_token(8)
    np.testing.assert_array_equal(loose.fit_transform(items), tight.fit_transform(items))
