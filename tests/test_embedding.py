"""TextEmbedder: a frozen pretrained encoder as an sklearn transformer."""

import json
import os
import shutil
import subprocess
import sys

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

pytest.importorskip("transformers")

from skopt_nn import TextEmbedder  # noqa: E402
from skopt_nn.embedding import clear_embedding_cache  # noqa: E402
from skopt_nn.specs._hf_testing import review_texts  # noqa: E402


pytestmark = pytest.mark.usefixtures("hf_offline")


@pytest.fixture(scope="module")
def checkpoint(tiny_bert):
    return tiny_bert


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_embedding_cache()
    yield
    clear_embedding_cache()


def _by_hand(checkpoint, texts, pooling):
    """Mean (or first-token) pooling written out with transformers alone."""
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(checkpoint, local_files_only=True).eval()
    out = []
    with torch.no_grad():
        for text in texts:
            enc = tok([text], truncation=True, max_length=24, return_tensors="pt")
            states = model(**enc).last_hidden_state[0]
            out.append(states[0] if pooling == "cls" else states.mean(dim=0))
    return torch.stack(out).numpy()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_embeddings_are_the_pooled_encoder_states(checkpoint, pooling):
    texts, _ = review_texts(12, seed=3)
    embedder = TextEmbedder(checkpoint, pooling=pooling, max_length=24, batch_size=5)
    emb = embedder.fit_transform(list(texts))
    assert emb.shape == (12, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, _by_hand(checkpoint, texts, pooling), atol=1e-5)
    assert embedder.pooling_ == pooling and embedder.n_features_in_ == 1
    assert list(embedder.get_feature_names_out()[:2]) == ["embedding0", "embedding1"]
    unit = TextEmbedder(checkpoint, pooling=pooling, max_length=24, normalize=True).fit_transform(list(texts))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)


def test_cross_validation_encodes_each_text_once(checkpoint):
    X, y = review_texts(90, seed=4)
    step = TextEmbedder(checkpoint, max_length=24, batch_size=1000)
    encoder = clone(step).fit(X[:1]).encoder_  # loaded once; the clones below share it
    rows = []
    hook = encoder.register_forward_hook(
        lambda module, args, kwargs, out: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        scores = cross_val_score(make_pipeline(step, LogisticRegression(max_iter=500)), X, y, cv=3)
    finally:
        hook.remove()
    assert np.all(scores > 0.4)
    # 3 folds transform every text twice (training rows) and once (test rows): each is encoded once
    assert sum(rows) == len(set(X))


def test_fit_learns_nothing_from_the_labels(checkpoint):
    X, y = review_texts(30, seed=5)
    a = TextEmbedder(checkpoint, max_length=24).fit(X, y).transform(X)
    b = TextEmbedder(checkpoint, max_length=24).fit(X[::-1]).transform(X)
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_pickled_embedder_needs_no_checkpoint(checkpoint, tmp_path):
    X, y = review_texts(40, seed=6)
    own = str(tmp_path / "ckpt")
    shutil.copytree(checkpoint, own)
    pipe = make_pipeline(TextEmbedder(own, max_length=24), LogisticRegression(max_iter=500)).fit(X, y)
    expected = pipe.predict_proba(X)
    joblib.dump(pipe, tmp_path / "pipe.joblib")
    shutil.rmtree(own)
    np.save(tmp_path / "X.npy", X.astype(str))
    np.save(tmp_path / "p.npy", expected)
    code = (
        "import sys, joblib, numpy as np\n"
        "d = sys.argv[1]\n"
        "pipe = joblib.load(d + '/pipe.joblib')\n"
        "p = pipe.predict_proba(list(np.load(d + '/X.npy')))\n"
        "assert np.abs(p - np.load(d + '/p.npy')).max() < 1e-6, 'predictions differ'\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def test_searches_tune_the_head_on_cached_embeddings(checkpoint):
    X, y = review_texts(60, seed=7)
    pipe = make_pipeline(TextEmbedder(checkpoint, max_length=24), LogisticRegression(max_iter=500))
    search = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0, 10.0]}, cv=2).fit(X, y)
    assert search.best_score_ > 0.4


def test_auto_pooling_and_bad_input(checkpoint, tmp_path):
    X, _ = review_texts(5, seed=8)
    assert TextEmbedder(checkpoint).fit(X).pooling_ == "mean"
    folder = str(tmp_path / "st")
    shutil.copytree(checkpoint, folder)
    with open(os.path.join(folder, "modules.json"), "w") as f:
        json.dump([{"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}], f)
    os.makedirs(os.path.join(folder, "1_Pooling"))
    with open(os.path.join(folder, "1_Pooling", "config.json"), "w") as f:
        json.dump({"pooling_mode_cls_token": True}, f)
    assert TextEmbedder(folder).fit(X).pooling_ == "cls"
    with pytest.raises(InvalidParameterError, match="The 'pooling' parameter of TextEmbedder must be"):
        TextEmbedder(checkpoint, pooling="max").fit(X)
    with pytest.raises(ValueError, match="TextEmbedder takes raw text"):
        TextEmbedder(checkpoint).fit(np.ones((4, 3)))
    with pytest.raises(ValueError, match="could not load the tokenizer"):
        TextEmbedder(str(tmp_path / "missing")).fit(X)


def test_the_pickle_free_format_stores_the_encoder(checkpoint, tmp_path):
    from skopt_nn import load, save

    X, y = review_texts(40, seed=9)
    own = str(tmp_path / "ckpt")
    shutil.copytree(checkpoint, own)
    pipe = make_pipeline(TextEmbedder(own, max_length=24), LogisticRegression(max_iter=500)).fit(X, y)
    expected = pipe.predict_proba(X)
    save(pipe, tmp_path / "pipe.safetensors")
    shutil.rmtree(own)
    clear_embedding_cache()
    loaded = load(tmp_path / "pipe.safetensors", trusted=["sklearn.linear_model.LogisticRegression"])
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-6)
    assert loaded[0].pooling_ == pipe[0].pooling_ and loaded[0].fingerprint_ == pipe[0].fingerprint_
    alone = TextEmbedder(checkpoint, max_length=24).fit(X)
    save(alone, tmp_path / "emb.safetensors")
    np.testing.assert_array_equal(load(tmp_path / "emb.safetensors").transform(X), alone.transform(X))
