"""mmsk.datasets: data home, the shipped AV-digits sample, the full loader, download."""

import gzip
import hashlib
import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from mmsk import datasets
from mmsk.datasets import (
    SAMPLE_TAKES,
    SPEAKERS,
    get_data_home,
    load_av_digits,
    load_sample,
)

META = ["label", "speaker", "take", "mnist_index", "split"]
WAV = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav$")


# ----------------------------------------------------------------------------- fixtures


def _idx_gz(array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def _tone_wav(digit, n=400):
    t = np.arange(n) / 8000
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * (200 + 50 * digit) * t), 8000, format="WAV")
    return buf.getvalue()


@pytest.fixture(scope="session")
def fake_files():
    """A complete stand-in for the full data: 3,000 tiny WAVs, 3,500 random 'MNIST' images."""
    rng = np.random.RandomState(0)
    labels = np.arange(3500) % 10
    rng.shuffle(labels)
    images = rng.randint(0, 256, size=(3500, 28, 28))
    wavs = {}
    for digit in range(10):
        content = _tone_wav(digit)
        for speaker in SPEAKERS:
            for take in range(50):
                wavs[f"{digit}_{speaker}_{take}.wav"] = content
    mnist = {
        "t10k-images-idx3-ubyte.gz": _idx_gz(images, 2051),
        "t10k-labels-idx1-ubyte.gz": _idx_gz(labels, 2049),
    }
    return {"wavs": wavs, "mnist": mnist, "labels": labels, "images": images.astype(np.uint8)}


def _write_home(home, fake_files, wavs=True, mnist=True):
    if wavs:
        rec = home / "fsdd" / "recordings"
        rec.mkdir(parents=True)
        for name, content in fake_files["wavs"].items():
            (rec / name).write_bytes(content)
    if mnist:
        (home / "mnist").mkdir(parents=True)
        for name, content in fake_files["mnist"].items():
            (home / "mnist" / name).write_bytes(content)
    return home


@pytest.fixture(scope="session")
def fake_home(tmp_path_factory, fake_files):
    return _write_home(tmp_path_factory.mktemp("fake_home"), fake_files)


@pytest.fixture(scope="session")
def real_home(shared_data):
    if not (shared_data / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST test files not found under {shared_data / 'mnist'}")
    return shared_data


@pytest.fixture(scope="session")
def sample():
    return load_sample()


# ----------------------------------------------------------------------------- data home


def test_get_data_home_argument_env_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MMSK_DATA", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_home(str(tmp_path)) == tmp_path
    monkeypatch.delenv("MMSK_DATA")
    assert get_data_home() == Path("~/mmsk_data").expanduser()
    assert "~" not in str(get_data_home("~/elsewhere"))
    assert not (tmp_path / "env").exists()  # never created
    with pytest.raises(ValueError, match="data_home"):
        get_data_home(3)


# ----------------------------------------------------------------------------- shipped sample


def test_sample_loads(sample):
    frame = sample.frame
    assert frame.shape == (300, 7)
    assert list(frame.columns) == ["image", "audio", *META]
    assert sample.feature_names == ["image", "audio"]
    assert frame["label"].value_counts().to_dict() == {d: 30 for d in range(10)}
    assert frame["speaker"].value_counts().to_dict() == {s: 50 for s in SPEAKERS}
    assert sorted(frame["take"].unique()) == list(SAMPLE_TAKES)
    assert frame["mnist_index"].is_unique
    assert frame.index.equals(pd.RangeIndex(300))
    pd.testing.assert_frame_equal(sample.data, frame[["image", "audio"]])
    pd.testing.assert_series_equal(sample.target, frame["label"])
    pd.testing.assert_series_equal(sample.groups, frame["speaker"])
    np.testing.assert_array_equal(sample.target_names, np.arange(10))
    assert sample.image_pca_components is None
    assert "CC BY-SA 4.0" in sample.DESCR and "CC BY-SA 3.0" in sample.DESCR


def test_sample_files_exist_decode_and_match_labels(sample):
    for image, audio, label, speaker, take, index in sample.frame[
        ["image", "audio", "label", "speaker", "take", "mnist_index"]
    ].itertuples(index=False):
        assert os.path.isabs(image) and os.path.isabs(audio)
        with Image.open(image) as img:
            assert img.size == (28, 28) and img.mode == "L"
        info = sf.info(audio)
        assert info.samplerate == 8000 and info.channels == 1 and info.frames > 0
        assert WAV.search(audio).groups() == (str(label), speaker, str(take))
        assert Path(image).name == f"{index}.png"


def test_sample_readme_credits_sources():
    readme = (Path(datasets.__file__).parent / "data" / "av_digits" / "README.md").read_text()
    for text in ("Jakobovski", "CC BY-SA 4.0", "LeCun", "Cortes", "CC BY-SA 3.0"):
        assert text in readme


def test_sample_return_X_y_and_as_frame(sample):
    X, y = load_sample(return_X_y=True)
    pd.testing.assert_frame_equal(X, sample.data)
    pd.testing.assert_series_equal(y, sample.target)
    bunch = load_sample(as_frame=False)
    assert bunch.frame is None
    assert bunch.data.shape == (300, 2) and bunch.data.dtype == object
    assert list(bunch.data[:, 1]) == list(sample.frame["audio"])
    np.testing.assert_array_equal(bunch.target, sample.target.to_numpy())
    assert list(bunch.groups) == list(sample.groups)
    X, y = load_sample(return_X_y=True, as_frame=False)
    assert X.shape == (300, 2) and isinstance(y, np.ndarray)


def test_sample_speaker_split(sample):
    assert (
        sample.frame["split"] == np.where(sample.frame["speaker"] == "theo", "test", "train")
    ).all()
    train, test = load_sample(subset="train"), load_sample(subset="test")
    assert len(train.frame) == 250 and len(test.frame) == 50
    assert set(train.groups).isdisjoint(test.groups)
    two = load_sample(subset="test", test_speakers=["george", "lucas"])
    assert set(two.groups) == {"george", "lucas"} and len(two.frame) == 100
    assert set(load_sample(subset="train", test_speakers="george").groups) == set(SPEAKERS) - {
        "george"
    }
    # a subset is exactly the matching rows of the whole
    whole = sample.frame[sample.frame["split"] == "test"].reset_index(drop=True)
    pd.testing.assert_frame_equal(test.frame, whole)


def test_sample_take_split():
    frame = load_sample(split="take").frame
    assert set(frame.loc[frame["split"] == "test", "take"]) == {0}
    test = load_sample(split="take", subset="test")
    assert len(test.frame) == 60 and set(test.groups) == set(SPEAKERS)


def test_sample_audio_noise_is_seeded(sample):
    a = load_sample(audio_snr_db=5, subset="test")
    b = load_sample(audio_snr_db=5, subset="test")
    c = load_sample(audio_snr_db=5, subset="test", random_state=1)
    wave = a.frame["audio"][0]
    assert isinstance(wave, np.ndarray) and wave.dtype == np.float32 and wave.ndim == 1
    assert all(
        np.array_equal(x, y) for x, y in zip(a.frame["audio"], b.frame["audio"], strict=True)
    )
    assert not np.array_equal(wave, c.frame["audio"][0])
    clean, sr = sf.read(load_sample(subset="test").frame["audio"][0], dtype="float32")
    assert sr == 8000 and wave.shape == clean.shape
    noise = wave.astype(float) - clean
    snr = 10 * np.log10(np.mean(clean.astype(float) ** 2) / np.mean(noise**2))
    assert abs(snr - 5) < 0.5
    # the noise of a row does not depend on which rows are loaded
    full = load_sample(audio_snr_db=5)
    rows = np.flatnonzero(full.frame["split"] == "test")
    assert all(
        np.array_equal(full.frame["audio"][r], x)
        for r, x in zip(rows, a.frame["audio"], strict=True)
    )
    pd.testing.assert_frame_equal(a.frame[META], load_sample(subset="test").frame[META])


def test_sample_image_energy_removed(sample):
    a = load_sample(image_energy_removed=0.75)
    b = load_sample(image_energy_removed=0.75)
    image = a.frame["image"][0]
    assert image.shape == (28, 28) and image.dtype == np.uint8
    assert all(
        np.array_equal(x, y) for x, y in zip(a.frame["image"], b.frame["image"], strict=True)
    )
    originals = np.stack([np.asarray(Image.open(p)) for p in sample.frame["image"]])
    degraded = np.stack(a.frame["image"].to_list())
    assert not np.array_equal(degraded, originals)
    assert 1 <= a.image_pca_components < 784
    more = load_sample(image_energy_removed=0.9)
    assert more.image_pca_components < a.image_pca_components
    # degraded images are further from the originals the more energy is removed
    err = [
        np.abs(np.stack(x.frame["image"].to_list()).astype(float) - originals).mean()
        for x in (a, more)
    ]
    assert 0 < err[0] < err[1]
    unchanged = load_sample(image_energy_removed=0)
    np.testing.assert_array_equal(np.stack(unchanged.frame["image"].to_list()), originals)
    # the PCA is fitted on the whole sample, so a subset is rows of the whole
    test = load_sample(image_energy_removed=0.75, subset="test")
    rows = np.flatnonzero(a.frame["split"] == "test")
    assert all(
        np.array_equal(a.frame["image"][r], x)
        for r, x in zip(rows, test.frame["image"], strict=True)
    )


BAD_ARGS = [
    ({"subset": "validation"}, "subset"),
    ({"subset": None}, "subset"),
    ({"split": "random"}, "split"),
    ({"test_speakers": ["bob"]}, "test_speakers"),
    ({"test_speakers": []}, "test_speakers"),
    ({"test_speakers": 3}, "test_speakers"),
    ({"test_speakers": list(SPEAKERS)}, "no training rows"),
    ({"split": "take", "test_speakers": ["theo"]}, "split='speaker' only"),
    ({"return_X_y": "yes"}, "return_X_y"),
    ({"as_frame": 1}, "as_frame"),
    ({"audio_snr_db": "loud"}, "audio_snr_db"),
    ({"audio_snr_db": float("nan")}, "audio_snr_db"),
    ({"audio_snr_db": True}, "audio_snr_db"),
    ({"image_energy_removed": 1.0}, "image_energy_removed"),
    ({"image_energy_removed": -0.1}, "image_energy_removed"),
    ({"random_state": -1}, "random_state"),
    ({"random_state": "seed"}, "random_state"),
]


@pytest.mark.parametrize("kwargs, match", BAD_ARGS)
def test_bad_arguments_raise_value_error(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=re.escape(match)):
        load_sample(**kwargs)
    with pytest.raises(ValueError, match=re.escape(match)):  # checked before looking for files
        load_av_digits(data_home=tmp_path, **kwargs)


def test_load_av_digits_bad_download_flag(tmp_path):
    with pytest.raises(ValueError, match="download_if_missing"):
        load_av_digits(data_home=tmp_path, download_if_missing="no")


def test_random_state_kinds_give_reproducible_noise():
    a = load_sample(audio_snr_db=0, subset="test", random_state=np.random.RandomState(3))
    b = load_sample(audio_snr_db=0, subset="test", random_state=np.random.RandomState(3))
    assert np.array_equal(a.frame["audio"][0], b.frame["audio"][0])
    assert isinstance(
        load_sample(audio_snr_db=0, subset="test", random_state=None).frame, pd.DataFrame
    )


# ----------------------------------------------------------------------------- pairing


def test_pairing_definition(fake_files):
    labels = fake_files["labels"]
    table = datasets._pairing(labels)
    pd.testing.assert_frame_equal(table, datasets._pairing(labels))
    assert len(table) == 3000 and table["mnist_index"].is_unique
    np.testing.assert_array_equal(labels[table["mnist_index"]], table["label"])
    # documented: per digit, RandomState(0) permutation assigned to clips sorted by (speaker, take)
    for digit in (0, 7):
        clips = table[table["label"] == digit].copy()
        clips["speaker_no"] = clips["speaker"].map(SPEAKERS.index)
        clips = clips.sort_values(["speaker_no", "take"])
        expected = np.random.RandomState(0).permutation(np.flatnonzero(labels == digit))[:300]
        np.testing.assert_array_equal(clips["mnist_index"], expected)
    # rows ordered by (take, speaker, label)
    assert list(table.iloc[0]) == [0, "george", 0, table["mnist_index"][0]]
    assert list(table[["label", "speaker", "take"]].iloc[11]) == [1, "jackson", 0]


def test_pairing_needs_enough_images():
    with pytest.raises(ValueError, match="digit 9"):
        datasets._pairing(np.arange(3000) % 9)


# ----------------------------------------------------------------------------- full loader


def test_load_av_digits_on_a_complete_home(fake_home, fake_files):
    av = load_av_digits(data_home=fake_home)
    frame = av.frame
    assert frame.shape == (3000, 7) and list(frame.columns) == ["image", "audio", *META]
    assert frame["label"].value_counts().to_dict() == {d: 300 for d in range(10)}
    assert frame["mnist_index"].is_unique
    np.testing.assert_array_equal(fake_files["labels"][frame["mnist_index"]], frame["label"])
    image = frame["image"][5]
    assert image.shape == (28, 28) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, fake_files["images"][frame["mnist_index"][5]])
    audio = frame["audio"][5]
    assert isinstance(audio, str) and os.path.isabs(audio) and os.path.isfile(audio)
    assert Path(audio).parent == fake_home / "fsdd" / "recordings"
    assert WAV.search(audio).groups() == tuple(
        str(v) for v in frame.loc[5, ["label", "speaker", "take"]]
    )
    pd.testing.assert_frame_equal(
        frame[["label", "speaker", "take", "mnist_index"]], datasets._pairing(fake_files["labels"])
    )


def test_load_av_digits_arrays(fake_home):
    bunch = load_av_digits(data_home=fake_home, subset="test", as_frame=False)
    assert bunch.frame is None and bunch.data.shape == (500, 2) and bunch.data.dtype == object
    assert bunch.data[0, 0].shape == (28, 28) and isinstance(bunch.data[0, 1], str)
    assert set(bunch.groups) == {"theo"} and bunch.target.dtype == np.int64
    X, y = load_av_digits(data_home=fake_home, subset="test", return_X_y=True)
    assert list(X.columns) == ["image", "audio"] and len(y) == 500 and y.name == "label"


def test_load_av_digits_reads_mmsk_data(fake_home, monkeypatch):
    monkeypatch.setenv("MMSK_DATA", str(fake_home))
    assert len(load_av_digits(subset="test").frame) == 500


def test_load_av_digits_splits(fake_home):
    train = load_av_digits(data_home=fake_home, subset="train")
    test = load_av_digits(data_home=fake_home, subset="test")
    assert len(train.frame) == 2500 and len(test.frame) == 500
    assert set(train.groups).isdisjoint(test.groups) and set(test.groups) == {"theo"}
    test2 = load_av_digits(data_home=fake_home, subset="test", test_speakers=("george", "nicolas"))
    assert set(test2.groups) == {"george", "nicolas"} and len(test2.frame) == 1000
    take = load_av_digits(data_home=fake_home, split="take", subset="test")
    assert len(take.frame) == 300 and set(take.frame["take"]) == {0, 1, 2, 3, 4}
    take_train = load_av_digits(data_home=fake_home, split="take", subset="train")
    assert take_train.frame["take"].min() == 5 and len(take_train.frame) == 2700


def test_load_av_digits_degradations(fake_home, fake_files):
    kw = dict(data_home=fake_home, audio_snr_db=10, image_energy_removed=0.5)
    a = load_av_digits(**kw)
    assert a.frame["audio"][0].dtype == np.float32 and a.frame["image"][0].dtype == np.uint8
    assert 1 <= a.image_pca_components < 784
    assert not np.array_equal(a.frame["image"][0], fake_files["images"][a.frame["mnist_index"][0]])
    # every row has its own noise, even where the clean clips are identical
    assert not np.array_equal(a.frame["audio"][0], a.frame["audio"][10])
    # a second call gives the same data, and subsets are rows of the whole, degradations included
    b = load_av_digits(**kw, subset="test")
    rows = np.flatnonzero(a.frame["split"] == "test")
    for col in ("image", "audio"):
        assert all(
            np.array_equal(a.frame[col][r], x) for r, x in zip(rows, b.frame[col], strict=True)
        )
    c = load_av_digits(**kw, subset="test", random_state=7)
    assert not np.array_equal(b.frame["audio"][0], c.frame["audio"][0])
    # the image degradation does not use random_state
    assert all(
        np.array_equal(x, y) for x, y in zip(b.frame["image"], c.frame["image"], strict=True)
    )


def test_missing_data_names_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("MMSK_DATA", raising=False)
    with pytest.raises(FileNotFoundError) as info:
        load_av_digits(data_home=tmp_path)
    message = str(info.value)
    for text in (
        str(tmp_path / "fsdd" / "recordings"),
        str(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"),
        str(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"),
        "data_home argument",
        "MMSK_DATA",
        "Jakobovski/free-spoken-digit-dataset",
        "load_sample",
    ):
        assert text in message
    monkeypatch.setenv("MMSK_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="MMSK_DATA environment variable"):
        load_av_digits()


def _link_recordings(home, fake_home):
    """A data home that shares the fake home's 3,000 recordings (no copying)."""
    (home / "fsdd").mkdir(parents=True)
    (home / "fsdd" / "recordings").symlink_to(fake_home / "fsdd" / "recordings")
    return home


def test_partly_missing_data(tmp_path, fake_files, fake_home):
    home = _write_home(tmp_path / "a", fake_files, wavs=False)
    recordings = home / "fsdd" / "recordings"
    recordings.mkdir(parents=True)
    for name in ["0_george_0.wav", "9_yweweler_49.wav"]:
        (recordings / name).write_bytes(fake_files["wavs"][name])
    with pytest.raises(FileNotFoundError, match=r"2998 of the 3,000 recordings .*0_george_1\.wav"):
        load_av_digits(data_home=home)
    home = _link_recordings(tmp_path / "b", fake_home)
    (home / "mnist").mkdir()
    name = "t10k-images-idx3-ubyte.gz"
    (home / "mnist" / name).write_bytes(fake_files["mnist"][name])
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz") as info:
        load_av_digits(data_home=home)
    assert "recordings" not in str(info.value).splitlines()[1]
    assert "t10k-images" not in str(info.value)


def test_corrupt_mnist_file(tmp_path, fake_files, fake_home):
    home = _link_recordings(tmp_path, fake_home)
    (home / "mnist").mkdir()
    labels = fake_files["mnist"]["t10k-labels-idx1-ubyte.gz"]
    (home / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(labels)
    (home / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(labels)
    with pytest.raises(ValueError, match="not an MNIST IDX file"):
        load_av_digits(data_home=home)


# ----------------------------------------------------------------------------- download


@pytest.fixture(scope="session")
def mirror_dir(tmp_path_factory, fake_files):
    """Local stand-ins for the download sources: an FSDD-like zip and the MNIST files."""
    src = tmp_path_factory.mktemp("mirror")
    with zipfile.ZipFile(src / "fsdd.zip", "w") as zf:
        zf.writestr("free-spoken-digit-dataset-master/README.md", "FSDD")
        zf.writestr("free-spoken-digit-dataset-master/recordings/0_jason_0.wav", b"other")
        for name, content in fake_files["wavs"].items():
            zf.writestr(f"free-spoken-digit-dataset-master/recordings/{name}", content)
    for name, content in fake_files["mnist"].items():
        (src / name).write_bytes(content)
    return src


@pytest.fixture
def mirrors(mirror_dir, fake_files, monkeypatch):
    """Point the download URLs at file:// URLs, with checksums of the fake files."""
    urls, md5 = {}, {}
    for name, content in fake_files["mnist"].items():
        urls[name] = ((mirror_dir / "absent" / name).as_uri(), (mirror_dir / name).as_uri())
        md5[name] = hashlib.md5(gzip.decompress(content)).hexdigest()
    monkeypatch.setattr(datasets, "FSDD_URL", (mirror_dir / "fsdd.zip").as_uri())
    monkeypatch.setattr(datasets, "MNIST_URLS", urls)
    monkeypatch.setattr(datasets, "MNIST_MD5", md5)
    return mirror_dir


def test_download_if_missing(mirrors, tmp_path, fake_home, monkeypatch):
    home = tmp_path / "home"
    av = load_av_digits(data_home=home, download_if_missing=True)
    recordings = home / "fsdd" / "recordings"
    assert len(os.listdir(recordings)) == 3000  # only the canonical clips, no leftovers
    assert not (recordings / "0_jason_0.wav").exists()
    assert sorted(os.listdir(home / "mnist")) == sorted(datasets.MNIST_URLS)
    expected = load_av_digits(data_home=fake_home)
    pd.testing.assert_frame_equal(av.frame[META], expected.frame[META])
    # a second call finds everything and downloads nothing
    monkeypatch.setattr(datasets, "FSDD_URL", (mirrors / "absent.zip").as_uri())
    assert len(load_av_digits(data_home=home, download_if_missing=True).frame) == 3000


def test_download_rejects_a_bad_checksum(mirrors, tmp_path, fake_home, monkeypatch):
    home = _link_recordings(tmp_path / "home", fake_home)  # only MNIST is downloaded
    monkeypatch.setitem(datasets.MNIST_MD5, "t10k-labels-idx1-ubyte.gz", "0" * 32)
    with pytest.raises(OSError, match="MD5 of the content .* expected 0{32}"):
        load_av_digits(data_home=home, download_if_missing=True)
    assert (home / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    assert not (home / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list((home / "mnist").glob("*.part"))


# ----------------------------------------------------------------------------- real data


def test_full_set_on_real_data(real_home):
    av = load_av_digits(data_home=real_home)
    frame = av.frame
    assert frame.shape == (3000, 7)
    assert frame["label"].value_counts().to_dict() == {d: 300 for d in range(10)}
    assert frame["mnist_index"].is_unique
    _, labels = datasets._read_mnist(real_home / "mnist")
    np.testing.assert_array_equal(labels[frame["mnist_index"]], frame["label"])
    assert all(os.path.isfile(p) for p in frame["audio"])
    assert sf.info(frame["audio"][0]).samplerate == 8000


def test_sample_equals_rows_of_the_full_set(real_home, sample):
    full = load_av_digits(data_home=real_home).frame
    rows = full[full["take"].isin(SAMPLE_TAKES)].reset_index(drop=True)
    pd.testing.assert_frame_equal(sample.frame[META], rows[META])
    for small, big in zip(sample.frame["audio"], rows["audio"], strict=True):
        assert Path(small).name == Path(big).name
        assert Path(small).read_bytes() == Path(big).read_bytes()
    for small, big in zip(sample.frame["image"], rows["image"], strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(small)), big)


def test_sample_noise_equals_full_set_noise(real_home):
    full = load_av_digits(data_home=real_home, subset="test", split="take", audio_snr_db=0)
    small = load_sample(subset="test", split="take", audio_snr_db=0)
    frame = full.frame
    rows = np.flatnonzero(frame["take"] == 0)
    assert len(rows) == len(small.frame) == 60
    for r, wave in zip(rows, small.frame["audio"], strict=True):
        np.testing.assert_array_equal(frame["audio"][r], wave)


# ----------------------------------------------------------------------------- imports


def test_datasets_does_not_import_torch():
    code = "import sys, mmsk.datasets; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
