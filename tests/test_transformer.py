"""Pretrained Hugging Face models on raw text: Transformer, LoRA, freezing, persistence.

Every checkpoint is a tiny BERT the tests build and save themselves; nothing
is downloaded (HF_HUB_OFFLINE=1 for the whole module).
"""

import json
import os
import shutil
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from skorch.callbacks import Callback
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils._param_validation import InvalidParameterError

pytest.importorskip("transformers")
pytest.importorskip("peft")

from skopt_nn import (  # noqa: E402
    Distillation, LoRA, LRSchedule, NNClassifier, NNRegressor, Quantization, SearchSpace, Transformer,
    export_onnx, load, make_search, save,
)
from skopt_nn.specs._hf_testing import review_texts, tiny_checkpoint  # noqa: E402


pytestmark = pytest.mark.usefixtures("hf_offline")


# The tiny checkpoints are random weights, not pretrained ones: they learn at
# a constant, large rate, not with the fine-tuning recipe "auto" stands for.
TINY = dict(lr_schedule="constant", early_stopping=False)


@pytest.fixture(scope="module")
def checkpoint(tiny_bert):
    return tiny_bert


@pytest.fixture(scope="module")
def pretrained(checkpoint, pretrain):
    """The tiny BERT trained on topic-and-mood labels, saved as a pretrained checkpoint."""
    return pretrain(checkpoint)


@pytest.fixture(scope="module")
def reviews():
    return review_texts(160, seed=1), review_texts(300, seed=2)


def _clf(path, **module):
    return NNClassifier(Transformer(path, max_length=24, **module), lr=1e-2, max_epochs=3, batch_size=32,
                        random_state=0, **TINY)


def test_fine_tunes_on_raw_text_in_any_container(pretrained, reviews):
    (X, y), (X_test, y_test) = reviews
    clf = _clf(pretrained).fit(list(X), y)
    assert clf.score(X_test, y_test) > 0.7
    assert clf.n_features_in_ == 1
    assert clf.n_trainable_params_ == clf.n_params_  # freeze=0: every weight trains
    proba = clf.predict_proba(pd.Series(X_test[:5]))
    np.testing.assert_allclose(proba, clf.predict_proba(X_test[:5].reshape(-1, 1)), atol=1e-6)
    framed = _clf(pretrained).fit(pd.DataFrame({"review": X}), y)
    assert list(framed.feature_names_in_) == ["review"]
    assert framed.__sklearn_tags__().input_tags.string


def test_regression_on_text(pretrained):
    X, _ = review_texts(160, seed=3)
    y = np.array([sum(w in ("good", "great", "fine", "lovely") for w in t.split()) for t in X], dtype=float)
    reg = NNRegressor(Transformer(pretrained, max_length=24), lr=3e-3, max_epochs=6, batch_size=32,
                      random_state=0, **TINY).fit(X, y)
    assert reg.predict(X[:7]).shape == (7,)
    assert reg.score(X, y) > 0.3


def test_lora_trains_few_weights_and_leaves_a_plain_model(pretrained, reviews):
    (X, y), (X_test, y_test) = reviews
    clf = _clf(pretrained, lora=LoRA(r=2)).fit(X, y)
    # rank-2 adapters on every linear layer of the body (the default), and the head in full
    body = [m for name, m in clf.module_.model.named_modules()
            if isinstance(m, torch.nn.Linear) and not name.startswith("classifier")]
    head = sum(p.numel() for p in clf.module_.model.classifier.parameters())
    assert clf.n_trainable_params_ == sum(2 * (m.in_features + m.out_features) for m in body) + head
    assert clf.n_trainable_params_ <= 0.1 * clf.n_params_
    assert clf.score(X_test, y_test) > 0.7
    model = clf.module_.model
    assert type(model).__module__.startswith("transformers.")  # merged: no peft wrapper left
    assert not any("lora" in name for name, _ in model.named_parameters())


@pytest.mark.parametrize("method", ["dynamic_int8", "float16"])
def test_a_lora_tuned_transformer_is_quantized_and_round_trips(pretrained, reviews, tmp_path, method):
    (X, y), (X_test, y_test) = reviews
    clf = _clf(pretrained, lora=LoRA(r=2)).set_params(quantization=Quantization(method)).fit(X, y)
    summary = clf.quantization_summary_
    assert summary["float_bytes"] > 1.9 * summary["quantized_bytes"]
    assert any("attention" in name for name in summary["layers"])  # the encoder's own layers
    assert clf.score(X_test, y_test) > 0.7
    save(clf, tmp_path / "q.skopt")
    np.testing.assert_array_equal(load(tmp_path / "q.skopt").predict_proba(X_test),
                                  clf.predict_proba(X_test))


def test_static_int8_is_refused_for_a_transformer_before_training(checkpoint, reviews):
    (X, y), _ = reviews
    clf = _clf(checkpoint).set_params(quantization=Quantization("static_int8"))
    with pytest.raises(ValueError, match="dynamic_int8"):
        clf.fit(X, y)
    assert not hasattr(clf, "n_iter_")


@pytest.mark.parametrize("freeze, lora", [(1, None), ("all", None), (1, LoRA(r=2))])
def test_frozen_weights_stay_bit_identical(checkpoint, reviews, freeze, lora):
    import safetensors.torch

    (X, y), _ = reviews
    start = safetensors.torch.load_file(os.path.join(checkpoint, "model.safetensors"))
    clf = _clf(checkpoint, freeze=freeze, lora=lora).fit(X, y)
    after = clf.module_.model.state_dict()
    frozen = ["bert.embeddings."] + (["bert."] if freeze == "all" else ["bert.encoder.layer.0."])
    checked = changed = 0
    for key, value in start.items():
        if key.startswith("classifier"):
            continue
        if any(key.startswith(prefix) for prefix in frozen):
            assert torch.equal(after[key], value), key
            checked += 1
        elif not torch.equal(after[key], value):
            changed += 1
    assert checked > 0
    assert (changed == 0) == (freeze == "all")


def test_layer_lr_decay_scales_rates_under_a_schedule(checkpoint, reviews):
    (X, y), _ = reviews
    clf = _clf(checkpoint, layer_lr_decay=0.5, head_lr=None).set_params(
        lr_schedule=LRSchedule("exponential", gamma=0.5), max_epochs=2).fit(X[:64], y[:64])
    groups = clf.net_.optimizer_.param_groups
    top = groups[-1]["lr"]  # head and pooler: the unscaled rate, after the schedule's decay
    assert 0 < top < 1e-2
    scales = sorted({round(g["lr"] / top, 6) for g in groups})
    assert scales == [0.25, 0.5, 1.0]  # embeddings, bottom layer, top layer and head


def test_cross_val_score_and_grid_search_over_lora_rank_and_lr(pretrained, reviews):
    (X, y), _ = reviews
    clf = _clf(pretrained, lora=LoRA(r=2)).set_params(max_epochs=2)
    scores = cross_val_score(clf, X, y, cv=2)
    assert scores.shape == (2,) and np.all(scores > 0.5)
    pipe = make_pipeline(FunctionTransformer(), clf)  # where a text-cleaning step would go
    grid = GridSearchCV(pipe, {"nnclassifier__module__lora__r": [1, 2],
                               "nnclassifier__lr": [3e-3, 1e-2]}, cv=2).fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_estimator_[-1].module.lora.r in (1, 2)
    assert grid.score(X, y) > 0.5


def test_fused_search_falls_back_to_plain_fits(checkpoint, reviews):
    (X, y), _ = reviews
    space = SearchSpace({"lr": [3e-3, 1e-2]})
    search = make_search(_clf(checkpoint).set_params(max_epochs=1), space, method="grid", fuse=True, cv=2)
    with pytest.warns(UserWarning, match="Transformer"):
        search.fit(X[:64], y[:64])
    assert len(search.cv_results_["params"]) == 2


@pytest.mark.slow
def test_fitted_model_works_without_its_checkpoint(checkpoint, reviews, tmp_path):
    (X, y), (X_test, _) = reviews
    own = str(tmp_path / "ckpt")
    shutil.copytree(checkpoint, own)
    clf = _clf(own, freeze=1, lora=LoRA(r=2)).fit(X, y)
    expected = clf.predict_proba(X_test[:20])
    joblib.dump(clf, tmp_path / "model.joblib")
    save(clf, tmp_path / "model.safetensors")
    np.save(tmp_path / "X.npy", X_test[:20].astype(str))
    np.save(tmp_path / "p.npy", expected)
    shutil.rmtree(own)
    code = (
        "import sys, joblib, numpy as np\n"
        "from skopt_nn import load\n"
        "d = sys.argv[1]\n"
        "X = list(np.load(d + '/X.npy')); p = np.load(d + '/p.npy')\n"
        "for m in (joblib.load(d + '/model.joblib'), load(d + '/model.safetensors')):\n"
        "    assert np.abs(m.predict_proba(X) - p).max() < 1e-6, 'predictions differ'\n"
        "print('ok')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith("ok")
    loaded = load(tmp_path / "model.safetensors")
    assert loaded.n_trainable_params_ == clf.n_trainable_params_
    # the loaded model keeps training (its frozen layers stay frozen)
    loaded.set_params(warm_start=True, max_epochs=1).fit(X, y)
    with pytest.raises(NotImplementedError, match="tokenizer"):
        export_onnx(clf, tmp_path / "model.onnx")


def test_transformer_teaches_a_smaller_transformer(pretrained, reviews, tmp_path):
    (X, y), (X_test, y_test) = reviews
    small = tiny_checkpoint(str(tmp_path / "small"), hidden_size=16, num_layers=1)
    teacher = _clf(pretrained)
    student = NNClassifier(Transformer(small, max_length=24), lr=1e-2, max_epochs=12, batch_size=32,
                           distillation=Distillation(teacher, alpha=0.7), random_state=0, **TINY).fit(X, y)
    assert student.n_params_ < 0.5 * teacher.fit(X, y).n_params_
    assert student.score(X_test, y_test) > 0.65


def test_training_knobs_and_checkpointing_work_on_a_transformer(pretrained):
    X, labels = review_texts(96, seed=4, label="both")
    Y = np.stack([np.char.endswith(labels.astype(str), "pos"),
                  np.char.startswith(labels.astype(str), "food")], axis=1).astype(int)
    clf = NNClassifier(Transformer(pretrained, max_length=24, gradient_checkpointing=True, lora=LoRA(r=2)),
                       lr=3e-3, max_epochs=3, batch_size=16, gradient_accumulation_steps=2,
                       max_grad_norm=1.0, random_state=0, **TINY).fit(X, Y)
    assert clf.predict(X[:4]).shape == (4, 2)  # multilabel: one head output per label
    assert clf.score(X, Y) > 0.5
    with pytest.raises(ValueError, match="pretrained Transformer"):
        _clf(pretrained).set_params(n_ensemble=2).fit(X, labels)


def test_partial_fit_continues_on_text(checkpoint, reviews):
    (X, y), _ = reviews
    clf = _clf(checkpoint)
    clf.partial_fit(X[:64], y[:64], classes=np.unique(y))
    clf.partial_fit(X[64:128], y[64:128])
    assert clf.n_iter_ == 2
    assert clf.predict(X[:3]).shape == (3,)


def test_bad_options_give_clear_errors(checkpoint, reviews, tmp_path):
    (X, y), _ = reviews
    with pytest.raises(InvalidParameterError, match="'freeze'"):
        _clf(checkpoint, freeze=-1).fit(X[:8], y[:8])
    with pytest.raises(InvalidParameterError, match="'r'"):
        _clf(checkpoint, lora=LoRA(r=0)).fit(X[:8], y[:8])
    with pytest.raises(ValueError, match="freeze=3 exceeds the 2 encoder layers"):
        _clf(checkpoint, freeze=3).fit(X[:8], y[:8])
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ValueError, match=r"no-such-model.*local_files_only"):
        _clf(missing).fit(X[:8], y[:8])
    with pytest.raises(ValueError, match="raw text"):
        _clf(checkpoint).fit(np.zeros((8, 1)), y[:8])
    clf = _clf(checkpoint).set_params(max_epochs=1).fit(X[:16], y[:16])
    with pytest.raises(ValueError, match="raw text"):
        clf.predict(np.arange(3))


@pytest.mark.slow
def test_import_stays_light():
    code = (
        "import sys, skopt_nn\n"
        "from skopt_nn import Transformer, LoRA, NNClassifier\n"
        "NNClassifier(Transformer('x', lora=LoRA())).get_params()\n"
        "print(sorted(m for m in ('transformers', 'peft') if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "[]", run.stderr[-2000:]


def _sentence_folder(checkpoint, path, **pooling):
    """A copy of the checkpoint laid out as a sentence-transformers folder declaring its pooling."""
    shutil.copytree(checkpoint, path)
    with open(os.path.join(path, "modules.json"), "w") as f:
        json.dump([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling"}], f)
    os.makedirs(os.path.join(path, "1_Pooling"))
    with open(os.path.join(path, "1_Pooling", "config.json"), "w") as f:
        json.dump({"word_embedding_dimension": 32, **pooling}, f)
    return path


def test_mean_pooling_averages_the_tokens_of_each_text(checkpoint, reviews):
    (X, y), _ = reviews
    clf = _clf(checkpoint, pooling="mean").fit(X, y)
    net = clf.module_
    assert net.pooling == "mean" and clf.score(X, y) > 0.5
    rows = net.encode(list(X[:6]))
    width = rows.shape[1] // 2
    ids, mask = rows[:, :width], rows[:, width:]
    with torch.no_grad():
        states = net.model(input_ids=ids, attention_mask=mask).last_hidden_state
        expected = [net.head(states[i, mask[i].bool()].mean(dim=0)) for i in range(len(rows))]
        np.testing.assert_allclose(net(rows).numpy(), torch.stack(expected).numpy(), atol=1e-5)
    # the default reads the architecture's own head for a plain checkpoint
    assert _clf(checkpoint).fit(X[:40], y[:40]).module_.pooling == "cls"


def test_auto_pooling_reads_a_sentence_transformers_folder(checkpoint, reviews, tmp_path):
    (X, y), _ = reviews
    mean = _sentence_folder(checkpoint, str(tmp_path / "mean"), pooling_mode_mean_tokens=True)
    cls = _sentence_folder(checkpoint, str(tmp_path / "cls"), pooling_mode_cls_token=True)
    assert Transformer(mean).resolved_pooling() == "mean"
    assert Transformer(cls).resolved_pooling() == "cls"
    assert Transformer(checkpoint).resolved_pooling() == "cls"
    assert Transformer(mean, pooling="cls").resolved_pooling() == "cls"
    assert _clf(mean).fit(X[:40], y[:40]).module_.pooling == "mean"
    with pytest.raises(InvalidParameterError, match="The 'pooling' parameter of Transformer must be"):
        _clf(checkpoint, pooling="max").fit(X[:40], y[:40])


def test_a_mean_pooled_model_round_trips_and_takes_lora(checkpoint, reviews, tmp_path):
    (X, y), (X_test, _) = reviews
    plain = _clf(checkpoint, pooling="mean").fit(X, y)
    adapted = _clf(checkpoint, pooling="mean", lora=LoRA(r=2)).fit(X, y)
    assert adapted.n_trainable_params_ < plain.n_trainable_params_ / 5
    assert not adapted.module_.lora_  # merged after fit
    for clf in (plain, adapted):
        expected = clf.predict_proba(X_test[:20])
        joblib.dump(clf, tmp_path / "m.joblib")
        save(clf, tmp_path / "m.safetensors")
        for loaded in (joblib.load(tmp_path / "m.joblib"), load(tmp_path / "m.safetensors")):
            assert loaded.module_.pooling == "mean"
            np.testing.assert_allclose(loaded.predict_proba(X_test[:20]), expected, atol=1e-6)


# -- the fine-tuning recipe the "auto" defaults stand for ---------------------


@pytest.mark.parametrize("module, peak", [({}, 3e-5), ({"lora": LoRA(r=2)}, 1e-3), ({"freeze": "all"}, 3e-3)],
                         ids=["full", "lora", "head"])
def test_a_transformer_fine_tunes_with_the_recipe_by_default(pretrained, reviews, module, peak):
    (X, y), _ = reviews
    clf = NNClassifier(Transformer(pretrained, max_length=24, **module), random_state=0)
    assert clf.get_params()["lr"] == "auto"
    clf.fit(X, y)
    rates = clf.history_[:, "lr"]
    # 20 epochs in batches of 16 over every training row (no held-out split)
    assert clf.n_iter_ == 20 and "valid_loss" not in clf.history_[-1]
    sizes = [batch["train_batch_size"] for batch in clf.history_[-1, "batches"] if "train_batch_size" in batch]
    assert max(sizes) == 16 and sum(sizes) == len(X)
    # a warm-up through the first epoch to the mode's rate, then linear decay to 0
    assert rates[0] < 0.2 * peak
    np.testing.assert_allclose(rates[1:], peak * (1 - np.arange(1, 20) / 20), rtol=1e-6)


class _HeadRates(Callback):
    """The rate of the optimizer groups holding the head's weights, and the others', after training.

    A fit trains a copy of its callbacks: what it finds goes to the class.
    """

    found = None

    def __init__(self, pooling):
        self.pooling = pooling

    def on_train_end(self, net, **kwargs):
        module = net.module_
        head = module.head if self.pooling == "mean" else module._base().classifier
        ids = {id(p) for p in head.parameters()}
        head_rates, other = set(), set()
        for group in net.optimizer_.param_groups:
            (head_rates if ids & {id(p) for p in group["params"]} else other).add(group["lr"])
        type(self).found = head_rates, other


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("module, lr, head_rate", [
    ({}, "auto", 3e-3),  # the body at 3e-5, the fresh head at the head-only rate
    ({"lora": LoRA(r=2)}, "auto", 3e-3),
    ({"head_lr": 1e-2}, 1e-3, 1e-2),
    ({"head_lr": None}, "auto", None),  # one rate for all
    ({"freeze": "all"}, "auto", None),  # the head is all that trains, at lr
], ids=["full", "lora", "set", "none", "head-only"])
def test_the_fresh_head_trains_at_its_own_rate(pretrained, reviews, tmp_path, pooling, module, lr,
                                               head_rate):
    (X, y), _ = reviews
    # a schedule that ends above 0: the rates' ratio is read after the last step
    _HeadRates.found = None
    clf = NNClassifier(Transformer(pretrained, max_length=24, pooling=pooling, **module), lr=lr,
                       lr_schedule=LRSchedule("exponential", gamma=0.5), max_epochs=2,
                       callbacks=[_HeadRates(pooling)], random_state=0).fit(X[:64], y[:64])
    net = clf.module_
    # with freeze="all" the head is all the optimizer holds
    head_rates, other = _HeadRates.found
    (body_rate,) = other or head_rates
    # the schedule scales both alike: the ratio holds at every step
    body_lr = clf._setting("lr")
    expected = body_lr if head_rate is None else head_rate
    assert 0 < body_rate < body_lr
    np.testing.assert_allclose(sorted(head_rates), [body_rate * expected / body_lr], rtol=1e-6)
    assert clf.predict(X[:5]).shape == (5,)
    # saved and loaded, the network keeps its head's rate for a continued fit
    save(clf.set_params(callbacks=None), tmp_path / "m.safetensors")
    assert load(tmp_path / "m.safetensors").module_.head_lr == net.head_lr


def test_head_lr_is_validated(pretrained, reviews):
    (X, y), _ = reviews
    for bad in (0.0, -1e-3, "fast"):
        with pytest.raises(InvalidParameterError, match="head_lr"):
            NNClassifier(Transformer(pretrained, head_lr=bad), max_epochs=1).fit(X[:8], y[:8])


def test_set_values_win_over_the_recipe(pretrained, reviews):
    (X, y), _ = reviews
    clf = NNClassifier(Transformer(pretrained, max_length=24), lr=1e-3, max_epochs=2, batch_size=64,
                       early_stopping=False, random_state=0).fit(X, y)
    rates = clf.history_[:, "lr"]
    assert clf.n_iter_ == 2 and "valid_loss" not in clf.history_[-1]
    sizes = [batch["train_batch_size"] for batch in clf.history_[-1, "batches"] if "train_batch_size" in batch]
    assert max(sizes) == 64 and sum(sizes) == len(X)
    np.testing.assert_allclose(rates[1], 1e-3 * 0.5, rtol=1e-6)  # the recipe's schedule at lr=1e-3
    # a nested schedule option on "auto" reaches the schedule it stands for
    clf.set_params(lr_schedule__warmup_epochs=0.5)
    assert clf.lr_schedule == LRSchedule("linear", warmup_epochs=0.5)
    assert NNClassifier().set_params(lr_schedule__warmup_epochs=2).lr_schedule == LRSchedule(
        "constant", warmup_epochs=2)
