"""ImagePixels, ImageFeatures and load_image on real files, bytes, arrays and PIL images."""

import gzip
import io
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import StandardScaler

from mmsk import ImageFeatures, ImagePixels, ItemError, ItemWarning
from mmsk.image import load_image

# -- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """Small image files of every kind, plus the arrays they were made from."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.RandomState(0)
    out = {}
    grey = (np.arange(28 * 28).reshape(28, 28) % 256).astype(np.uint8)
    out["grey_array"] = grey
    out["grey"] = str(folder / "grey_28x28.png")
    Image.fromarray(grey).save(out["grey"])
    rgb = (rng.rand(20, 40, 3) * 255).astype(np.uint8)  # 40 wide, 20 high
    out["rgb_array"] = rgb
    out["rgb"] = str(folder / "rgb_40x20.png")
    Image.fromarray(rgb).save(out["rgb"])
    out["jpeg"] = str(folder / "rgb_40x20.jpg")
    Image.fromarray(rgb).save(out["jpeg"], quality=95)
    rgba = (rng.rand(16, 16, 4) * 255).astype(np.uint8)
    out["rgba_array"] = rgba
    out["rgba"] = str(folder / "rgba.png")
    Image.fromarray(rgba).save(out["rgba"])
    out["white"] = str(folder / "white.png")
    Image.new("L", (30, 30), 255).save(out["white"])
    out["black"] = str(folder / "black.jpg")
    Image.new("RGB", (30, 30), 0).save(out["black"])
    data = Path(out["rgb"]).read_bytes()
    out["truncated"] = str(folder / "truncated.png")
    Path(out["truncated"]).write_bytes(data[: len(data) // 2])
    data = Path(out["jpeg"]).read_bytes()
    out["truncated_jpeg"] = str(folder / "truncated.jpg")
    Path(out["truncated_jpeg"]).write_bytes(data[: len(data) // 2])
    out["random"] = str(folder / "random.png")
    Path(out["random"]).write_bytes(rng.bytes(500))
    out["empty"] = str(folder / "empty.png")
    Path(out["empty"]).write_bytes(b"")
    wide16 = np.array([[0, 256, 40000, 65535]], dtype=np.uint16)
    out["grey16"] = str(folder / "grey16.png")
    Image.fromarray(wide16).save(out["grey16"])
    return out


def _mnist_dir():
    env = os.environ.get("MMSK_DATA")
    for base in [Path(env)] if env else []:
        if (base / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            return base / "mnist"
    base = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    return base if (base / "t10k-images-idx3-ubyte.gz").is_file() else None


@pytest.fixture(scope="session")
def mnist_pngs(tmp_path_factory):
    """Five real MNIST digits written as PNG files, with their arrays."""
    folder = _mnist_dir()
    if folder is None:
        pytest.skip("MNIST not found: set MMSK_DATA or place it at ../shared/data/mnist")
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz") as fh:
        raw = fh.read(16 + 5 * 28 * 28)
    digits = np.frombuffer(raw, np.uint8, offset=16).reshape(5, 28, 28)
    out = tmp_path_factory.mktemp("mnist")
    paths = []
    for i, digit in enumerate(digits):
        paths.append(str(out / f"digit_{i}.png"))
        Image.fromarray(digit).save(paths[-1])
    return paths, digits


# -- load_image --------------------------------------------------------------------


def test_load_image_every_kind_gives_the_same_pixels(images):
    rgb = images["rgb_array"]
    kinds = [
        images["rgb"],
        Path(images["rgb"]),
        Path(images["rgb"]).read_bytes(),
        io.BytesIO(Path(images["rgb"]).read_bytes()),
        Image.fromarray(rgb),
        rgb,
        rgb.astype(np.float64) / 255,
        rgb.astype(np.int64),
    ]
    for source in kinds:
        img = load_image(source, "RGB")
        assert img.mode == "RGB" and img.size == (40, 20)
        np.testing.assert_array_equal(np.asarray(img), rgb)


def test_load_image_arrays():
    assert load_image(np.ones((3, 4, 1), np.uint8)).mode == "L"
    assert load_image(np.ones((3, 4, 4), np.uint8)).mode == "RGBA"
    bw = np.asarray(load_image(np.array([[True, False]])))
    np.testing.assert_array_equal(bw, [[255, 0]])
    floats = np.asarray(load_image(np.array([[0.0, 0.5, 1.0]])))
    np.testing.assert_array_equal(floats, [[0, 128, 255]])


def test_load_image_scales_16_bit_grey(images):
    np.testing.assert_array_equal(np.asarray(load_image(images["grey16"], "L")), [[0, 1, 156, 255]])


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count open files")
def test_load_image_closes_files(images):
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        load_image(images["rgb"], "L")
        with pytest.raises(ValueError):
            load_image(images["truncated"], "L")
    assert len(os.listdir("/proc/self/fd")) <= before


# -- ImagePixels -------------------------------------------------------------------


def test_pixels_shape_dtype_range_and_names(images):
    paths = [images["grey"], images["rgb"], images["jpeg"], images["rgba"]]
    est = ImagePixels().fit(paths)
    X = est.transform(paths)
    assert X.shape == (4, 28 * 28) and X.dtype == np.float32
    assert X.min() >= 0.0 and X.max() <= 1.0
    assert est.output_shape_ == (1, 28, 28) and est.n_features_out_ == 784
    names = est.get_feature_names_out()
    assert names[0] == "px_0_0_L" and names[1] == "px_0_1_L" and names[-1] == "px_27_27_L"
    # an image already at the size comes back unchanged
    np.testing.assert_array_equal(X[0], images["grey_array"].reshape(-1) / np.float32(255))


def test_pixels_white_is_one_and_black_is_zero(images):
    est = ImagePixels(size=(10, 10), mode="RGB")
    X = est.fit_transform([images["white"], images["black"], np.zeros((5, 5), np.uint8)])
    assert np.all(X[0] == 1.0) and np.all(X[1] == 0.0) and np.all(X[2] == 0.0)


def test_pixels_channels_first_layout_and_width_height_order():
    rng = np.random.RandomState(0)
    rgb = (rng.rand(4, 8, 3) * 255).astype(np.uint8)  # 4 rows, 8 columns
    est = ImagePixels(size=(8, 4), mode="RGB").fit([rgb])
    assert est.output_shape_ == (3, 4, 8)
    X = est.transform([rgb])
    np.testing.assert_allclose(X.reshape(-1, *est.output_shape_)[0], rgb.transpose(2, 0, 1) / 255)
    names = list(est.get_feature_names_out())
    assert names[3 * 8 + 7] == "px_3_7_R" and names[4 * 8] == "px_0_0_G" and len(names) == 96
    assert X[0, names.index("px_3_7_R")] == pytest.approx(rgb[3, 7, 0] / 255)


@pytest.mark.parametrize("mode, channels", [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4)])
def test_pixels_modes(images, mode, channels):
    est = ImagePixels(size=(6, 5), mode=mode).fit([images["rgba"]])
    X = est.transform([images["rgba"], images["grey"]])
    assert est.output_shape_ == (channels, 5, 6) and X.shape == (2, channels * 30)
    assert est.get_feature_names_out()[-1].endswith(f"_{mode[-1]}")


def test_pixels_pad_keeps_the_aspect_ratio():
    wide = np.full((10, 40), 255, np.uint8)  # white, 4:1
    X = ImagePixels(size=(8, 8), resize="pad").fit_transform([wide]).reshape(8, 8)
    np.testing.assert_array_equal(X[:3], 0.0)  # black bars top and bottom
    np.testing.assert_array_equal(X[-3:], 0.0)
    np.testing.assert_array_equal(X[3:5], 1.0)  # the image, full width
    tall = np.full((40, 10), 255, np.uint8)
    X = ImagePixels(size=(8, 8), resize="pad").fit_transform([tall]).reshape(8, 8)
    np.testing.assert_array_equal(X[:, :3], 0.0)
    np.testing.assert_array_equal(X[:, 3:5], 1.0)


def test_pixels_crop_keeps_the_centre_and_stretch_squeezes():
    wide = np.zeros((10, 40), np.uint8)
    wide[:, 15:25] = 255  # white centre square, black sides
    crop = ImagePixels(size=(8, 8), resize="crop", resample="nearest").fit_transform([wide])
    np.testing.assert_array_equal(crop, 1.0)
    stretch = ImagePixels(size=(8, 8), resize="stretch", resample="nearest").fit_transform([wide])
    assert 0 < stretch.mean() < 0.5
    same = ImagePixels(size=(40, 10), resize="crop").fit_transform([wide])
    np.testing.assert_array_equal(same[0], wide.reshape(-1) / np.float32(255))


def test_pixels_every_item_kind_and_missing(images):
    rgb = images["rgb_array"]
    items = [
        images["rgb"],
        Path(images["rgb"]),
        Path(images["rgb"]).read_bytes(),
        Image.fromarray(rgb),
        rgb,
        rgb / 255.0,
        None,
        np.nan,
        pd.NA,
    ]
    X = ImagePixels(size=(10, 5), mode="RGB").fit_transform(items)
    for row in X[1:6]:
        np.testing.assert_array_equal(row, X[0])
    assert not np.isnan(X[:6]).any() and np.isnan(X[6:]).all()


def test_pixels_jpeg_close_to_png(images):
    X = ImagePixels(size=(40, 20), mode="RGB").fit_transform([images["rgb"], images["jpeg"]])
    means = X.reshape(2, 3, -1).mean(axis=2)  # random noise: JPEG keeps only the averages
    np.testing.assert_allclose(means[0], means[1], atol=0.02)


def test_pixels_real_mnist_digits(mnist_pngs):
    paths, digits = mnist_pngs
    est = ImagePixels().fit(paths)
    X = est.transform(paths)
    np.testing.assert_array_equal(X, digits.reshape(5, -1) / np.float32(255))
    np.testing.assert_array_equal(est.transform(digits), X)  # (n, 28, 28) stack of arrays
    small = ImagePixels(size=(14, 14)).fit_transform(paths)
    assert small.shape == (5, 196) and 0.05 < small.mean() < 0.5  # ink on black


# -- ImageFeatures -----------------------------------------------------------------


def test_features_names_and_shape(images):
    est = ImageFeatures().fit([images["rgb"]])
    names = list(est.get_feature_names_out())
    assert len(names) == 3 * 16 + 4 * 4 * 9 + 3 * 4 + 2 == est.n_features_out_
    assert names[0] == "color_R_00" and "color_R_07" in names and names[47] == "color_B_15"
    assert names[48] == "hog_r0_c0_o00" and "hog_r1_c2_o05" in names
    assert names[-3:] == ["stat_B_max", "stat_grad_mean", "stat_edge_density"]
    X = est.transform([images["rgb"], images["grey"], images["rgba"], images["jpeg"], None])
    assert X.shape == (5, len(names)) and X.dtype == np.float32
    assert np.isfinite(X[:4]).all() and np.isnan(X[4]).all()
    colour = X[:4, :48].reshape(4, 3, 16)
    np.testing.assert_allclose(colour.sum(axis=2), 1.0, rtol=1e-5)
    hog = X[:4, 48:192].reshape(4, 16, 9)
    norms = np.linalg.norm(hog, axis=2)
    assert np.all((np.abs(norms - 1) < 1e-3) | (norms < 1e-6))


def test_features_red_image_fills_the_top_red_bin():
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    est = ImageFeatures(size=(32, 32)).fit([red])
    row = pd.Series(est.transform([red])[0], index=est.get_feature_names_out())
    assert row["color_R_15"] == 1.0 and row["color_G_00"] == 1.0 and row["color_B_00"] == 1.0
    assert row.filter(like="color_R_").sum() == pytest.approx(1.0)
    assert row["stat_R_mean"] == 1.0 and row["stat_G_max"] == 0.0 and row["stat_R_std"] == 0.0
    assert row["stat_grad_mean"] == 0.0 and row.filter(like="hog_").sum() == 0.0


def test_features_hog_orientation_of_stripes():
    vertical = np.zeros((32, 32), np.uint8)
    vertical[:, ::4] = 255
    vertical[:, 1::4] = 255
    horizontal = vertical.T.copy()
    est = ImageFeatures(size=(32, 32), mode="L", features=["hog"], hog_orientations=8)
    X = est.fit_transform([vertical, horizontal]).reshape(2, 16, 8)
    # vertical stripes: intensity changes along x, a horizontal gradient, bin 0 (0 degrees)
    assert np.all(X[0].argmax(axis=1) == 0) and np.allclose(X[0][:, 1:], 0)
    # horizontal stripes: a vertical gradient, 90 degrees = bin 4 of 8
    assert np.all(X[1].argmax(axis=1) == 4) and np.allclose(X[1][:, 0], 0)
    names = est.get_feature_names_out()
    assert names[0] == "hog_r0_c0_o00" and len(names) == 128


def test_features_groups_grey_mode_and_fixed_order(images):
    est = ImageFeatures(mode="L", features=("stats", "color"), color_bins=4).fit([images["rgb"]])
    names = list(est.get_feature_names_out())
    assert names == [
        "color_L_00", "color_L_01", "color_L_02", "color_L_03",
        "stat_L_mean", "stat_L_std", "stat_L_min", "stat_L_max",
        "stat_grad_mean", "stat_edge_density",
    ]  # fmt: skip
    X = est.transform([images["white"]])
    np.testing.assert_allclose(X[0], [0, 0, 0, 1, 1, 0, 1, 1, 0, 0])
    only = ImageFeatures(features="hog").fit([images["rgb"]])
    assert all(n.startswith("hog_") for n in only.get_feature_names_out())


# -- the shared contract, both classes ---------------------------------------------

ESTIMATORS = [
    pytest.param(lambda **kw: ImagePixels(size=(8, 6), mode="RGB", **kw), id="ImagePixels"),
    pytest.param(lambda **kw: ImageFeatures(size=(16, 16), **kw), id="ImageFeatures"),
]


@pytest.mark.parametrize("make", ESTIMATORS)
def test_input_containers_give_equal_output(images, make):
    items = [images["grey"], images["rgb"], None, images["jpeg"]]
    ref = make().fit(items).transform(items)
    for X in [
        np.array(items, dtype=object),
        pd.Series(items, name="image"),
        pd.DataFrame({"image": items}),
        np.array(items, dtype=object).reshape(-1, 1),
        [[item] for item in items],
    ]:
        np.testing.assert_array_equal(make().fit(X).transform(X), ref)


@pytest.mark.parametrize("make", ESTIMATORS)
def test_column_transformer_with_pandas_output(images, make):
    df = pd.DataFrame({"image": [images["grey"], images["rgb"], None], "price": [1.0, 2.0, 3.0]})
    ct = ColumnTransformer([("image", make(), "image"), ("tabular", StandardScaler(), ["price"])])
    out = ct.set_output(transform="pandas").fit_transform(df)
    pixels = isinstance(ct.named_transformers_["image"], ImagePixels)
    first = "image__px_0_0_R" if pixels else "image__color_R_00"
    assert out.columns[0] == first and out.columns[-1] == "tabular__price"
    assert out.shape == (3, ct.named_transformers_["image"].n_features_out_ + 1)
    assert out.iloc[2, :-1].isna().all() and out.iloc[:2, :-1].notna().all().all()


@pytest.mark.parametrize("make", ESTIMATORS)
def test_clone_params_and_pickle(images, make):
    items = [images["rgb"], images["grey"]]
    est = make()
    params = est.get_params()
    twin = clone(est).set_params(**params)
    assert twin.get_params() == params
    fitted = est.fit(items)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.transform(items), fitted.transform(items))
    np.testing.assert_array_equal(twin.fit(items).transform(items), fitted.transform(items))


@pytest.mark.parametrize("make", ESTIMATORS)
def test_n_jobs_gives_equal_output(images, make):
    items = [images["grey"], images["rgb"], images["jpeg"], images["rgba"], None] * 3
    one = make(n_jobs=1).fit(items).transform(items)
    np.testing.assert_array_equal(make(n_jobs=2).fit(items).transform(items), one)


BAD_ITEMS = {
    "missing file": ("nope/missing.png", r"missing\.png'\): file not found"),
    "truncated png": ("truncated", r"truncated\.png'\): truncated or corrupt image"),
    "truncated jpeg": ("truncated_jpeg", r"truncated\.jpg'\): truncated or corrupt image"),
    "random bytes": ("random", r"random\.png'\): not an image Pillow can read"),
    "empty file": ("empty", r"empty\.png'\): empty file"),
    "empty bytes": (b"", r"<0 bytes>\): .*empty"),
    "undecodable bytes": (b"not an image at all", r"<19 bytes>\): not an image Pillow"),
    "wrong type": (42, r"\(42\): unsupported item type int; expected a path"),
    "float range": (np.full((4, 4), 3.0), r"float pixel values must lie in \[0, 1\]"),
    "empty array": (np.zeros((0, 4), np.uint8), r"empty image"),
    "channels first": (np.zeros((3, 8, 8), np.uint8), r"\(H, W, C\) channels-last"),
    "0-size PIL": (Image.new("L", (0, 0)), r"empty image \(0 x 0 pixels\)"),
}


def _bad(images, key):
    item = BAD_ITEMS[key][0]
    return images.get(item, item) if isinstance(item, str) else item


@pytest.mark.parametrize("make", ESTIMATORS)
@pytest.mark.parametrize("key", list(BAD_ITEMS))
def test_bad_item_raises_naming_column_row_and_item(images, make, key):
    X = pd.Series([images["grey"], images["rgb"], _bad(images, key)], name="image")
    est = make().fit(X[:2])
    with pytest.raises(ItemError, match=r"^image: row 2 .*" + BAD_ITEMS[key][1]):
        est.transform(X)


@pytest.mark.parametrize("key", list(BAD_ITEMS))
def test_bad_item_with_on_error_nan_warns_once(images, key):
    X = pd.Series([images["grey"], _bad(images, key), images["rgb"]], name="image")
    est = ImagePixels(size=(4, 4), on_error="nan").fit(X[:1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = est.transform(X)
    messages = [str(w.message) for w in caught if issubclass(w.category, ItemWarning)]
    assert len(messages) == 1 and messages[0].startswith("image: 1 of 3 images")
    assert np.isnan(out[1]).all() and not np.isnan(out[[0, 2]]).any()


def test_bad_items_also_fail_with_the_cache_on(images, tmp_path):
    est = ImagePixels(memory=tmp_path, on_error="raise").fit([images["grey"]])
    with pytest.raises(ItemError, match=r"row 1 .*truncated\.png'\): truncated or corrupt"):
        est.transform([images["grey"], images["truncated"]])
    with pytest.raises(ItemError, match=r"row 0 .*empty\.png'\): empty file"):
        est.transform([images["empty"]])


@pytest.mark.parametrize(
    "params",
    [
        dict(size=(0, 28)),
        dict(size=28),
        dict(size=(28.0, 28)),
        dict(mode="CMYK"),
        dict(resize="fit"),
        dict(resample="cubic"),
        dict(on_error="ignore"),
        dict(n_jobs="2"),
        dict(memory=5),
    ],
)
def test_pixels_bad_params_raise_in_fit(images, params):
    est = ImagePixels(**params)  # __init__ only stores
    with pytest.raises(ValueError):
        est.fit([images["grey"]])


@pytest.mark.parametrize(
    "params",
    [
        dict(features=()),
        dict(features=("color", "edges")),
        dict(features=("hog", "hog")),
        dict(color_bins=0),
        dict(color_bins=257),
        dict(hog_orientations=0),
        dict(hog_cells=(100, 2)),
        dict(hog_cells=(2,)),
        dict(mode="RGBA"),
        dict(size=(64, -1)),
    ],
)
def test_features_bad_params_raise_in_fit(images, params):
    est = ImageFeatures(**params)
    with pytest.raises(ValueError):
        est.fit([images["grey"]])


@pytest.mark.parametrize("make", ESTIMATORS)
def test_memory_cache_extracts_each_item_once(images, make, tmp_path, count_extractions):
    calls = count_extractions(type(make()))
    items = [images["grey"], images["rgb"], images["jpeg"], None]
    est = make(memory=str(tmp_path)).fit(items)
    first = est.transform(items)
    assert len(calls) == 3
    np.testing.assert_array_equal(est.transform(items), first)
    np.testing.assert_array_equal(clone(est).fit(items).transform(items[::-1]), first[::-1])
    assert len(calls) == 3
    make(memory=str(tmp_path), on_error="nan").fit(items).transform(items)  # same cache key
    assert len(calls) == 3


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_pixels_workers_send_8_bit_rows_and_the_output_is_identical(images, mode):
    from mmsk._extract import _extract_wire_batch

    good = [images["grey"], images["rgb"], images["rgba"], images["white"], images["black"]]
    items = (good + [None, images["truncated"], ""]) * 3  # missing, failed, missing
    est = ImagePixels(size=(9, 7), mode=mode, on_error="nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItemWarning)
        alone = est.fit_transform(items)
        parallel = clone(est).set_params(n_jobs=2).fit_transform(items)
    np.testing.assert_array_equal(parallel, alone)  # NaN rows where they were, bits equal
    assert np.isnan(alone[5::8]).all() and np.isnan(alone[6::8]).all()
    rows, failures, skipped = _extract_wire_batch(est, items[:8], 0, "image", alone.shape[1])
    assert rows.dtype == np.uint8 and rows.nbytes * 4 == alone[:8].nbytes
    assert skipped == [5, 6, 7] and len(failures) == 1
    np.testing.assert_array_equal(est._from_wire(rows[:5]), alone[:5])


def test_a_subclass_that_overrides_extract_gets_its_own_rows_from_workers(images):
    class Brighter(ImagePixels):
        def _extract(self, source):
            return np.minimum(super()._extract(source) + np.float32(0.25), np.float32(1))

    items = [images["grey"], images["rgb"], images["white"], images["black"]] * 3
    alone = Brighter(size=(5, 5), mode="L").fit_transform(items)
    parallel = Brighter(size=(5, 5), mode="L", n_jobs=2).fit_transform(items)
    np.testing.assert_array_equal(parallel, alone)
    assert alone.min() >= 0.25
