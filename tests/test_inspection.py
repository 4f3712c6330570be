"""mmsk.inspection: modality importance, corruptions, robustness reports, their plots."""

import io
import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import mmsk.inspection as inspection
from mmsk import ItemError, TfidfSVD
from mmsk.audio import AudioFeatures
from mmsk.image import ImagePixels
from mmsk.inspection import (
    AudioNoise,
    ImageBlur,
    ImageNoise,
    ImageOcclusion,
    MissingModality,
    TokenDrop,
    effective_robustness,
    get_corruption,
    make_robustness_scorer,
    modality_importance,
    relative_robustness,
    robustness_report,
)

COLUMNS = [
    "modality",
    "method",
    "metric",
    "importance_mean",
    "importance_std",
    "baseline_score",
    "rank",
    "n_repeats",
    "scores",
    "importances",
]


@pytest.fixture(scope="module")
def blocks():
    """Two feature blocks: 'a' decides the class, 'b' is noise."""
    rng = np.random.default_rng(0)
    n = 400
    a = rng.normal(size=(n, 3))
    b = rng.normal(size=(n, 3))
    y = (a[:, 0] + 0.5 * a[:, 1] > 0).astype(int)
    X = pd.DataFrame(
        np.hstack([a, b]), columns=[f"a__{i}" for i in range(3)] + [f"b__{i}" for i in range(3)]
    )
    return X, y


@pytest.fixture(scope="module")
def imputed(blocks):
    X, y = blocks
    return make_pipeline(SimpleImputer(), LogisticRegression()).fit(X, y)


def _imp(result, modality, method="permutation"):
    row = result[(result["modality"] == modality) & (result["method"] == method)]
    return float(row["importance_mean"].iloc[0])


# -- modality importance -------------------------------------------------------------------
def test_permutation_irrelevant_modality_is_zero_informative_is_positive(blocks):
    X, y = blocks
    clf = LogisticRegression().fit(X, y)
    result = modality_importance(clf, X, y, method="permutation", n_repeats=5, random_state=0)
    assert _imp(result, "a") > 0.3
    assert abs(_imp(result, "b")) < 0.03
    assert result.loc[result["modality"] == "a", "rank"].item() == 1


def test_ablation_agrees_with_permutation(blocks, imputed):
    X, y = blocks
    result = modality_importance(imputed, X, y, n_repeats=3, random_state=0)
    assert _imp(result, "a", "ablation") > 0.3
    assert abs(_imp(result, "b", "ablation")) < 0.03
    ranks = result.pivot(index="modality", columns="method", values="rank")
    assert ranks["permutation"].to_dict() == ranks["ablation"].to_dict() == {"a": 1, "b": 2}


def test_tidy_frame(blocks, imputed):
    X, y = blocks
    result = modality_importance(
        imputed, X, y, scoring=["accuracy", "neg_log_loss"], n_repeats=4, random_state=0
    )
    assert list(result.columns) == COLUMNS
    assert len(result) == 2 * 2 * 2  # modalities x methods x metrics
    assert set(result["metric"]) == {"accuracy", "neg_log_loss"}
    perm = result[result["method"] == "permutation"]
    assert (perm["n_repeats"] == 4).all() and all(len(s) == 4 for s in perm["scores"])
    assert (result.loc[result["method"] == "ablation", "n_repeats"] == 1).all()
    for _, row in result.iterrows():
        np.testing.assert_allclose(row["importances"], row["baseline_score"] - row["scores"])
        assert row["importance_mean"] == pytest.approx(np.mean(row["importances"]))
    again = modality_importance(
        imputed, X, y, scoring=["accuracy", "neg_log_loss"], n_repeats=4, random_state=0
    )
    pd.testing.assert_frame_equal(
        result.drop(columns=["scores", "importances"]),
        again.drop(columns=["scores", "importances"]),
    )


def test_raw_columns_of_a_pipeline_are_permuted_together():
    rng = np.random.default_rng(1)
    n = 240
    y = rng.integers(0, 2, n)
    words = np.array(["good great fine", "bad awful poor"])
    X = pd.DataFrame(
        {
            "review": [f"{words[c]} {rng.choice(['the', 'a', 'it'])}" for c in y],
            "age": rng.normal(size=n),
            "price": rng.normal(size=n),
        }
    )
    features = ColumnTransformer(
        [
            ("text", TfidfSVD(n_components=4, random_state=0), "review"),
            ("tabular", StandardScaler(), ["age", "price"]),
        ]
    ).set_output(transform="pandas")
    model = Pipeline([("features", features), ("clf", LogisticRegression())]).fit(X, y)
    result = modality_importance(model, X, y, method="permutation", random_state=0)
    assert _imp(result, "text") > 0.3
    assert abs(_imp(result, "tabular")) < 0.05
    # an explicit mapping overrides the branches
    mine = modality_importance(
        model, X, y, modalities={"numbers": ["age", "price"]}, method="permutation"
    )
    assert mine["modality"].tolist() == ["numbers"]


def test_fusion_net_ablation_takes_the_missing_modality_path(blocks):
    from mmsk import FusionClassifier

    X, y = blocks
    clf = FusionClassifier(max_epochs=15, modality_dropout=0.3, random_state=0, n_jobs=1)
    clf.fit(X.iloc[:300], y[:300])
    result = modality_importance(clf, X.iloc[300:], y[300:], n_repeats=3, random_state=0)
    for method in ("permutation", "ablation"):
        assert _imp(result, "a", method) > 0.2, method
        assert abs(_imp(result, "b", method)) < 0.1, method


def test_importance_errors(blocks):
    X, y = blocks
    clf = LogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="method='permutation'"):
        modality_importance(clf, X, y, method="ablation")
    with pytest.raises(ValueError, match="method must be"):
        modality_importance(clf, X, y, method="shuffle")
    with pytest.raises(ValueError, match="n_repeats"):
        modality_importance(clf, X, y, n_repeats=0)
    with pytest.raises(ValueError, match=r"column 'nope' is not in X"):
        modality_importance(clf, X, y, modalities={"a": ["nope"]})
    plain = X.rename(columns=lambda c: c.replace("__", "_"))
    plain_clf = LogisticRegression().fit(plain, y)
    with pytest.raises(ValueError, match="cannot find the modalities"):
        modality_importance(plain_clf, plain, y)


# -- corruptions ---------------------------------------------------------------------------
def _snr(clean, noisy):
    return 10 * np.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))


def test_audio_noise_on_files_keeps_rate_and_reaches_the_snr(tmp_path):
    sr = 16000
    t = np.arange(sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32")
    path = tmp_path / "tone.wav"
    sf.write(path, tone, sr)
    for snr in (20.0, 0.0, -5.0):
        (out,) = AudioNoise()([str(path)], snr, random_state=0)
        assert isinstance(out, bytes)
        noisy, rate = sf.read(io.BytesIO(out), dtype="float32")
        assert rate == sr and noisy.shape == tone.shape
        assert _snr(tone.astype(np.float64), noisy) == pytest.approx(snr, abs=0.2)
    (wave,) = AudioNoise()([tone], 10.0, random_state=0)
    assert wave.dtype == np.float32 and _snr(tone, wave) == pytest.approx(10.0, abs=0.2)
    # what comes out is an item the extractor reads (and resamples)
    features = AudioFeatures(sr=8000, n_mfcc=4).fit_transform([out, str(path), None])
    assert features.shape[0] == 3 and np.isfinite(features[:2]).all()
    assert np.isnan(features[2]).all()


def test_image_occlusion_covers_the_fraction(tmp_path):
    white = np.full((30, 40, 3), 255, dtype=np.uint8)
    path = tmp_path / "white.png"
    Image.fromarray(white).save(path)
    for level in (0.1, 0.25, 0.5, 1.0):
        (out,) = ImageOcclusion()([str(path)], level, random_state=3)
        assert out.shape == (30, 40, 3) and out.dtype == np.uint8
        covered = (out == 0).all(axis=2).mean()
        assert covered == pytest.approx(level, abs=0.02)
    assert (ImageOcclusion()([white], 0.0)[0] == white).all()
    pixels = ImagePixels(size=(8, 8), mode="L").fit_transform(ImageOcclusion()([white], 0.5))
    assert pixels.shape == (1, 64) and 0 < pixels.mean() < 1


def test_image_blur_and_noise(png_paths):
    (sharp,) = ImageBlur()([png_paths[5]], 0.0)
    (blurred,) = ImageBlur()([png_paths[5]], 2.0)
    assert blurred.shape == sharp.shape
    assert (
        np.abs(np.diff(blurred.astype(float), axis=1)).mean()
        < 0.5 * np.abs(np.diff(sharp.astype(float), axis=1)).mean()
    )
    grey = np.full((64, 64), 128, dtype=np.uint8)
    (noisy,) = ImageNoise()([grey], 0.1, random_state=0)
    assert (noisy / 255.0 - grey / 255.0).std() == pytest.approx(0.1, abs=0.01)


def test_token_drop_rate_and_errors():
    text = " ".join(f"w{i}" for i in range(2000))
    (out,) = TokenDrop()([text], 0.25, random_state=0)
    kept = out.split()
    assert 1 - len(kept) / 2000 == pytest.approx(0.25, abs=0.03)
    assert set(kept) <= set(text.split())
    assert TokenDrop()([text, None], 0.0) == [text, None]
    with pytest.raises(ItemError, match=r"row 1 .*a text item must be a str"):
        TokenDrop()(pd.Series(["ok", 3.5], name="review"), 0.5)


def test_missing_rate_is_honoured_on_every_column():
    X = pd.DataFrame({"img": [f"{i}.png" for i in range(40)], "x": np.arange(40.0), "k": 1})
    corruption = MissingModality()
    for rate in (0.1, 0.25, 0.5, 1.0):
        out = corruption.apply(X, ["img", "x"], rate, random_state=7)
        gone = out["img"].isna()
        assert gone.sum() == round(rate * 40)
        assert (out["x"].isna() == gone).all() and out["k"].notna().all()
        assert out.loc[gone, "img"].map(lambda v: v is None).all()
    low = corruption.apply(X, ["x"], 0.25, random_state=7)["x"].isna()
    high = corruption.apply(X, ["x"], 0.5, random_state=7)["x"].isna()
    assert (high[low]).all(), "the rows missing at a lower rate stay missing at a higher one"
    assert X["img"].notna().all(), "the input is not modified"


@pytest.mark.parametrize(
    "corruption, level, match",
    [
        (AudioNoise(), -math.inf, "pure noise"),
        (ImageOcclusion(), 1.5, r"\[0, 1\]"),
        (MissingModality(), -0.1, r"\[0, 1\]"),
        (ImageBlur(), -1, ">= 0"),
        (TokenDrop(), "a", "real number"),
    ],
)
def test_bad_levels(corruption, level, match):
    with pytest.raises(ValueError, match=match):
        corruption(["x"], level)


def test_corruption_names():
    assert isinstance(get_corruption("noise", "audio"), AudioNoise)
    assert isinstance(get_corruption("noise", "image"), ImageNoise)
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        get_corruption("fog", "image")
    with pytest.raises(ValueError, match="applies to \\['image'\\]"):
        get_corruption("blur", "tabular")


# -- robustness reports --------------------------------------------------------------------
def test_report_scores_fall_with_missing_rate(blocks, imputed):
    X, y = blocks
    report = robustness_report(
        imputed, X, y, corruptions="missing", levels=[0.25, 0.5, 1.0], random_state=0
    )
    scores = report.scores
    a = scores[scores["modality"] == "a"]
    b = scores[scores["modality"] == "b"]
    assert a["severity"].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert (np.diff(a["score"]) < 0).all() and a["score"].iloc[-1] < 0.65
    assert b["score"].max() - b["score"].min() < 0.03
    summary = report.summary.set_index("modality")
    assert summary.loc["a", "relative_robustness"] == pytest.approx(
        np.trapezoid(a["score"], a["severity"])
    )
    assert summary.loc["a", "relative_robustness"] < summary.loc["b", "relative_robustness"]
    assert summary["effective_robustness"].isna().all()


def test_report_effective_robustness_against_a_baseline(blocks, imputed):
    X, y = blocks
    weak = make_pipeline(SimpleImputer(), LogisticRegression(C=1e-3)).fit(X, y)
    kwargs = dict(corruptions={"a": "missing"}, levels=[0.5, 1.0], random_state=0)
    with_model = robustness_report(imputed, X, y, baseline=weak, **kwargs)
    base = robustness_report(weak, X, y, **kwargs)
    with_report = robustness_report(imputed, X, y, baseline=base, **kwargs)
    expected = effective_robustness(with_model.scores["score"], base.scores["score"])
    assert with_model.summary["effective_robustness"].item() == pytest.approx(expected)
    assert with_report.summary["effective_robustness"].item() == pytest.approx(expected)
    np.testing.assert_allclose(with_model.scores["baseline_score"], base.scores["score"])
    with pytest.raises(ValueError, match="no score for"):
        robustness_report(
            imputed, X, y, baseline=base, corruptions={"a": "missing"}, levels=[0.3], random_state=0
        )


def test_robustness_helpers():
    assert relative_robustness([0.8]) == 0.8
    assert relative_robustness([1.0, 0.0]) == pytest.approx(0.5)
    assert effective_robustness([0.9, 0.7], [0.6, 0.4]) == pytest.approx(0.0)


def test_report_errors(blocks, imputed):
    X, y = blocks
    with pytest.raises(ValueError, match="unknown modality 'c'"):
        robustness_report(imputed, X, y, corruptions={"c": "missing"})
    with pytest.raises(ValueError, match=r"modality 'a': .*applies to \['image'\]"):
        robustness_report(imputed, X, y, corruptions={"a": "blur"})
    with pytest.raises(ValueError, match=r"missing rate must lie in \[0, 1\]"):
        robustness_report(imputed, X, y, corruptions={"a": "missing"}, levels=[2.0])


def test_robustness_scorer_in_grid_search(blocks):
    X, y = blocks
    scorer = make_robustness_scorer("a", "missing", [0.5, 1.0])
    search = GridSearchCV(
        make_pipeline(SimpleImputer(), LogisticRegression()),
        {"logisticregression__C": [1e-3, 1.0]},
        scoring={"accuracy": "accuracy", "robust": scorer},
        refit="robust",
        cv=3,
    ).fit(X, y)
    robust = search.cv_results_["mean_test_robust"]
    assert np.isfinite(robust).all() and (robust < search.cv_results_["mean_test_accuracy"]).all()
    direct = scorer(search.best_estimator_, X, y)
    report = robustness_report(
        search.best_estimator_,
        X,
        y,
        corruptions={"a": "missing"},
        levels=[0.5, 1.0],
        random_state=0,
    )
    assert direct == pytest.approx(report.summary["relative_robustness"].item())
    with pytest.raises(ValueError, match="summary must be"):
        make_robustness_scorer("a", "missing", summary="best")
    with pytest.raises(ValueError, match="unknown corruption"):
        make_robustness_scorer("a", "fog")


# -- plots ---------------------------------------------------------------------------------
@pytest.fixture()
def agg():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_plots(agg, blocks, imputed):
    from mmsk.plotting import plot_confusion_matrix, plot_modality_importance, plot_robustness

    X, y = blocks
    result = modality_importance(imputed, X, y, n_repeats=2, random_state=0)
    ax = plot_modality_importance(result)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a"]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"permutation", "ablation"}
    report = robustness_report(
        imputed, X, y, corruptions="missing", levels=[0.5, 1.0], random_state=0
    )
    axes = plot_robustness({"imputed": report, "again": report})
    assert len(axes) == 2 and axes[0].get_title() == "a: missing"
    assert len(axes[0].get_lines()) == 2
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["clean", "50%", "100%"]
    ax = plot_confusion_matrix(imputed, X, y, normalize="true")
    assert ax.get_ylabel() == "True label"
    with pytest.raises(ValueError, match="metric 'f1'"):
        plot_modality_importance(result, metric="f1")


def test_history_marks_the_restored_epoch(agg, blocks):
    from mmsk import FusionClassifier
    from mmsk.plotting import plot_history

    X, y = blocks
    clf = FusionClassifier(
        max_epochs=12, early_stopping=True, n_iter_no_change=3, random_state=0, n_jobs=1
    ).fit(X, y)
    ax = plot_history(clf)
    restored = [line for line in ax.get_lines() if "restored" in line.get_label()]
    assert len(restored) == 1
    epoch = restored[0].get_xdata()[0]
    stopper = dict(clf.net_.callbacks_)["early_stopping"]
    assert epoch == stopper.best_epoch_


# -- docstrings ----------------------------------------------------------------------------
_PUBLIC = [f"mmsk.inspection.{name}" for name in inspection.__all__]
_PUBLIC += [
    "mmsk.plotting.plot_modality_importance",
    "mmsk.plotting.plot_robustness",
    "mmsk.plotting.plot_confusion_matrix",
    "mmsk.plotting.plot_history",
    "mmsk.inspection.Corruption.apply",
    "mmsk.inspection.MissingModality.rows",
]
#: numpydoc checks that must pass: documented parameters and returns, Examples, summary.
_CHECKS = {"GL08", "PR01", "PR02", "PR06", "PR07", "PR09", "RT01", "RT03", "EX01", "SS01", "SS05"}


@pytest.mark.parametrize("name", _PUBLIC)
def test_public_docstrings(name):
    validate = pytest.importorskip("numpydoc.validate").validate
    errors = [(code, msg) for code, msg in validate(name)["errors"] if code in _CHECKS]
    assert not errors, errors
