"""Safe model files: CrossModalRetriever, and models made on CUDA loaded on a CPU."""

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

import mmsk
import mmsk.io
from mmsk import CrossModalRetriever, FusionClassifier
from mmsk._portable import weights_from_bytes, weights_to_bytes

SMALL = dict(hidden_units=16, embed_dim=6, batch_size=32, max_epochs=4, n_jobs=1, random_state=0)


def make_pairs(n=120, seed=0):
    """Two views of the same latent points (as in tests/test_retrieval.py, smaller)."""
    rng = np.random.RandomState(seed)
    z = rng.normal(size=(n, 3))
    audio = z @ rng.normal(size=(3, 5)) + 0.1 * rng.normal(size=(n, 5))
    image = np.tanh(z @ rng.normal(size=(3, 7))) + 0.05 * rng.normal(size=(n, 7))
    return {"audio": audio, "image": image}, rng.randint(3, size=n)


@pytest.fixture(scope="module")
def pairs():
    return make_pairs()


@pytest.fixture(scope="module")
def retriever(pairs):
    X, y = pairs
    # early stopping, a conv-free net with batch norm (buffers) and a learned temperature
    return CrossModalRetriever(early_stopping=True, validation_fraction=0.25, **SMALL).fit(X, y)


# -- CrossModalRetriever --------------------------------------------------------------------
def test_retriever_round_trip_gives_identical_embeddings_and_rankings(retriever, pairs, tmp_path):
    X, y = pairs
    path = mmsk.save(retriever, tmp_path / "ret.skops")
    with zipfile.ZipFile(path) as archive:  # the net is tensors and JSON, not a pickle
        schema = archive.read("schema.json").decode()
    assert "NeuralNet" not in schema and "DualEncoder" not in schema
    loaded = mmsk.load(path)
    assert type(loaded) is CrossModalRetriever and loaded is not retriever
    assert loaded.device_ == "cpu" and not loaded.net_.module_.training
    for name in ("audio", "image"):
        np.testing.assert_array_equal(
            loaded.transform({name: X[name]}), retriever.transform({name: X[name]})
        )
    for got, want in zip(loaded.rank(X, X, k=5), retriever.rank(X, X, k=5), strict=True):
        np.testing.assert_array_equal(got, want)
    assert loaded.score(X, y) == retriever.score(X, y)
    assert loaded.temperature_ == retriever.temperature_
    assert loaded.get_params() == retriever.get_params()
    # a loaded retriever refits like a new one (the same seeds: the same net)
    refit = mmsk.load(path).fit(X, y)
    np.testing.assert_allclose(refit.transform(X), retriever.transform(X), atol=1e-6)


def test_retriever_on_a_dataframe_round_trip(pairs, tmp_path):
    X, _ = pairs
    frame = pd.concat(
        [
            pd.DataFrame(b, columns=[f"{name}__f{j}" for j in range(b.shape[1])])
            for name, b in X.items()
        ],
        axis=1,
    )
    fitted = CrossModalRetriever(query="image", target="audio", **SMALL).fit(frame)
    loaded = mmsk.load(mmsk.save(fitted, tmp_path / "ret.skops"))
    np.testing.assert_array_equal(loaded.transform(frame), fitted.transform(frame))
    assert list(loaded.feature_names_in_) == list(frame.columns)


def test_retriever_card_describes_the_space(retriever, pairs, tmp_path):
    X, _ = pairs
    path = mmsk.save(retriever, tmp_path / "ret.skops")
    card = mmsk.io.read_card(path)
    assert card["task"] == "retrieval" and card["fusion"] == []
    (entry,) = card["retrieval"]
    assert entry["path"] == "" and entry["estimator"] == "CrossModalRetriever"
    assert (entry["query"], entry["target"]) == (retriever.query_, retriever.target_)
    assert entry["modalities"] == {"audio": 5, "image": 7}
    assert entry["embed_dim"] == 6 and entry["device"] == "cpu"
    assert entry["early_stopping"] is True
    assert entry["temperature"] == pytest.approx(retriever.temperature_)
    assert entry["net"]["epochs"] == len(retriever.net_.history)
    assert np.isfinite(entry["net"]["valid_loss"])
    json.dumps(card, allow_nan=False)  # JSON data throughout


def test_an_unfitted_retriever_and_damaged_retriever_weights(retriever, tmp_path):
    unfitted = mmsk.load(mmsk.save(CrossModalRetriever(embed_dim=3), tmp_path / "u.skops"))
    assert unfitted.get_params()["embed_dim"] == 3 and not hasattr(unfitted, "net_")
    # weights of another net (other widths) under a valid description are refused
    other = CrossModalRetriever(**{**SMALL, "hidden_units": 8}).fit(make_pairs(40)[0])
    path = mmsk.save(retriever, tmp_path / "ret.skops")
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    (weights,) = [
        n for n, data in members.items() if data == weights_to_bytes(retriever.net_.module_)
    ]
    members[weights] = weights_to_bytes(other.net_.module_)
    damaged = tmp_path / "damaged.skops"
    with zipfile.ZipFile(damaged, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(mmsk.io.ModelFileError, match="do not fit the net"):
        mmsk.load(damaged)


# -- a model made on a GPU, loaded on a CPU -------------------------------------------------
class _ClaimsCuda(torch.Tensor):
    """A CPU tensor whose ``device`` says ``cuda:0``; records the devices it is moved to."""

    moves: list = []
    __torch_function__ = torch._C._disabled_torch_function_impl

    @property
    def device(self):
        return torch.device("cuda", 0)

    @property
    def is_cuda(self):
        return True

    def detach(self):
        return self  # keep the claim through detach()

    def to(self, *args, **kwargs):
        _ClaimsCuda.moves.append(torch.device(kwargs.get("device", args[0] if args else "cpu")))
        return torch.Tensor.to(self.as_subclass(torch.Tensor), *args, **kwargs)


def _claim_cuda(estimator, monkeypatch):
    """Make a CPU-fitted estimator's state say that it was trained on CUDA."""
    estimator.set_params(device="cuda")
    monkeypatch.setitem(estimator.__dict__, "device_", "cuda")
    for net in estimator.__dict__.get("nets_") or [estimator.net_]:
        module = net.module_
        tensors = {
            k: torch.Tensor._make_subclass(_ClaimsCuda, v) for k, v in module.state_dict().items()
        }
        monkeypatch.setattr(module, "state_dict", lambda tensors=tensors: tensors)
        monkeypatch.setattr(net, "device", "cuda")


def test_weights_of_any_device_are_stored_as_cpu_tensors(monkeypatch):
    layer = torch.nn.Linear(3, 2)
    tensors = {
        k: torch.Tensor._make_subclass(_ClaimsCuda, v) for k, v in layer.state_dict().items()
    }
    monkeypatch.setattr(layer, "state_dict", lambda: tensors)
    monkeypatch.setattr(_ClaimsCuda, "moves", [])
    weights = weights_from_bytes(weights_to_bytes(layer))
    assert _ClaimsCuda.moves == [torch.device("cpu")] * 2  # each tensor copied to the CPU
    assert {k: v.device.type for k, v in weights.items()} == {"weight": "cpu", "bias": "cpu"}
    assert torch.equal(weights["weight"], layer.weight.detach())


@pytest.mark.parametrize("kind", ["classifier", "retriever"])
def test_a_model_whose_state_says_cuda_loads_on_the_cpu(kind, pairs, tmp_path, monkeypatch):
    """A simulated CUDA-trained model, saved and loaded on this CPU-only machine.

    The model is fitted on the CPU, then its state is made to say CUDA: the
    ``device`` parameter and ``device_`` are ``"cuda"``, each net's
    ``device`` is ``"cuda"``, and each module's ``state_dict`` hands out
    tensors whose ``device`` claims ``cuda:0`` (a Tensor subclass that
    records where it is moved).

    What this proves: saving copies every weight tensor to the CPU
    explicitly (whatever device the tensor reports) and writes no CUDA
    tensor; loading ignores the devices recorded in the state and builds
    the nets on ``map_location`` (the CPU by default), with the same
    predictions; ``map_location="cuda"`` on a machine without CUDA is a
    clear error, not a crash inside torch.
    What it does not prove: that real CUDA storage copies right (no GPU
    here), nor anything about cuDNN or mixed precision; the ``gpu``-marked
    tests below do it on a real device where there is one.
    """
    X, y = pairs
    if kind == "classifier":
        model = FusionClassifier(hidden_units=8, max_epochs=3, n_estimators=2, random_state=0)
        model.fit(X, y)
        expected = model.predict_proba(X)
    else:
        model = CrossModalRetriever(**SMALL).fit(X, y)
        expected = model.transform(X)
    _claim_cuda(model, monkeypatch)
    monkeypatch.setattr(_ClaimsCuda, "moves", [])
    path = mmsk.save(model, tmp_path / "cuda.skops")
    nets = getattr(model, "nets_", [model.net_])
    n_tensors = sum(len(net.module_.state_dict()) for net in nets)
    assert _ClaimsCuda.moves == [torch.device("cpu")] * n_tensors
    loaded = mmsk.load(path)
    assert loaded.device_ == "cpu"
    assert {p.device.type for p in loaded.net_.module_.parameters()} == {"cpu"}
    assert torch.device(loaded.net_.device).type == "cpu"
    got = loaded.predict_proba(X) if kind == "classifier" else loaded.transform(X)
    np.testing.assert_array_equal(got, expected)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            mmsk.load(path, map_location="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda device")
def test_a_retriever_fitted_on_a_gpu_loads_on_the_cpu(pairs, tmp_path):
    X, y = pairs
    gpu = CrossModalRetriever(device="cuda", **SMALL).fit(X, y)
    assert next(gpu.net_.module_.parameters()).device.type == "cuda"
    cpu = mmsk.load(mmsk.save(gpu, tmp_path / "gpu.skops"))
    assert cpu.device_ == "cpu" and next(cpu.net_.module_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(cpu.transform(X), gpu.transform(X), atol=1e-5)
    again = mmsk.load(tmp_path / "gpu.skops", map_location="cuda")
    assert next(again.net_.module_.parameters()).device.type == "cuda"
    np.testing.assert_allclose(again.transform(X), gpu.transform(X), atol=1e-5)
