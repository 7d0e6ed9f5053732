"""Structured pruning of a pretrained encoder: whole attention heads and feed-forward neurons.

Every checkpoint is a tiny BERT (4 heads a layer) the tests build and save
themselves; nothing is downloaded (HF_HUB_OFFLINE=1 for the whole module).
"""

import io
import math
import shutil

import joblib
import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

pytest.importorskip("transformers")
pytest.importorskip("peft")

from skopt_nn import Distillation, LoRA, NNClassifier, Pruning, Quantization, Transformer, load, make_search, save  # noqa: E402
from skopt_nn.specs._encoder_units import encoder_units  # noqa: E402
from skopt_nn.specs._hf_testing import review_texts, tiny_checkpoint  # noqa: E402
from skopt_nn.specs.pruning import _Holder  # noqa: E402

pytestmark = pytest.mark.usefixtures("hf_offline")

TINY = dict(lr_schedule="constant", early_stopping=False, batch_size=32)


@pytest.fixture(scope="module")
def four_heads(tmp_path_factory):
    return tiny_checkpoint(str(tmp_path_factory.mktemp("hf") / "heads4"), num_heads=4)


@pytest.fixture(scope="module")
def pretrained(four_heads, pretrain):
    """The 4-head BERT trained on topic-and-mood labels, saved as a pretrained checkpoint."""
    return pretrain(four_heads)


@pytest.fixture(scope="module")
def reviews():
    return review_texts(160, seed=1), review_texts(300, seed=2)


def _clf(path, pruning=None, pooling="mean", **kwargs):
    params = dict(lr=1e-2, max_epochs=4, random_state=0, **TINY)
    params.update(kwargs)
    return NNClassifier(Transformer(path, max_length=24, pooling=pooling), pruning=pruning, **params)


def _layers(clf):
    return clf.module_._base().base_model.encoder.layer


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_heads_and_neurons_are_removed_and_the_model_still_predicts(pretrained, reviews, pooling):
    (X, y), (X_test, y_test) = reviews
    dense = _clf(pretrained, pooling=pooling).fit(X, y)
    pruned = _clf(pretrained, Pruning("ln_structured", amount=0.5), pooling=pooling).fit(X, y)
    for layer in _layers(pruned):
        attention = layer.attention.self
        assert attention.num_attention_heads == 2
        assert attention.query.out_features == attention.key.out_features == attention.value.out_features == 16
        assert layer.attention.output.dense.in_features == 16
        assert layer.intermediate.dense.out_features == 32 == layer.output.dense.in_features
    assert pruned.n_params_ < dense.n_params_
    assert pruned.sparsity_ == pytest.approx(0.5)
    kinds = [(row["type"], row["units"], row["units_kept"], row["removed"]) for row in pruned.pruning_summary_]
    assert kinds == [("heads", 4, 2, True), ("neurons", 64, 32, True)] * 2
    # half the heads and neurons of a pretrained encoder, fine-tuned after the cut: still accurate
    assert pruned.score(X_test, y_test) > 0.7
    assert pruned.predict_proba(X_test).shape == (len(X_test), len(pruned.classes_))


def test_each_kind_has_its_own_amount(pretrained, reviews):
    (X, y), _ = reviews
    only_neurons = _clf(pretrained, Pruning("ln_structured", amount=0.25, head_amount=0.0), max_epochs=2).fit(X, y)
    assert [row["units_kept"] for row in only_neurons.pruning_summary_] == [4, 48, 4, 48]
    assert _layers(only_neurons)[0].attention.self.num_attention_heads == 4
    gradual = _clf(pretrained, Pruning("ln_structured", amount=0.25, head_amount=0.75, schedule="gradual",
                                       start=0.0, end=0.5, n_steps=2), max_epochs=4).fit(X, y)
    assert [row["units_kept"] for row in gradual.pruning_summary_] == [1, 48, 1, 48]


def _masked_and_removed(path, pruning):
    """A built network's outputs with the pruned units masked to zero, and after their removal."""
    clf = _clf(path, pruning, max_epochs=1)
    net = clf.module.build(1, 3).eval()
    callback = pruning._make_callback(net, max_epochs=1, steps_per_epoch=1).initialize()
    holder = _Holder(net)
    holder.history = []
    callback.on_train_begin(holder)
    callback._advance(math.inf)
    callback.on_train_end(holder)  # masks made permanent: the pruned rows are zeros
    X = net.encode(review_texts(40, seed=5)[0])
    with torch.no_grad():
        masked = net(X)
        removed, info = callback.finish(net)
        after = removed(X)
    return masked, after, removed, info


def test_removal_computes_exactly_what_the_masked_encoder_did(pretrained):
    masked, after, removed, info = _masked_and_removed(pretrained, Pruning("ln_structured", amount=0.5,
                                                                           head_amount=0.5))
    torch.testing.assert_close(after, masked, rtol=1e-5, atol=1e-5)
    assert [row["final_shape"] for row in info["layers"]] == [(16, 32), (32, 32)] * 2
    assert removed.model.encoder.layer[1].attention.self.num_attention_heads == 2


def test_the_weakest_head_and_neuron_go_first(pretrained):
    clf = _clf(pretrained)
    net = clf.module.build(1, 3)
    layer = net.model.encoder.layer[0]
    with torch.no_grad():
        layer.attention.self.value.weight[8:16] *= 1e-3  # head 1 of 4 (head size 8)
        layer.attention.self.query.weight[8:16] *= 1e-3
        layer.attention.self.key.weight[8:16] *= 1e-3
        layer.attention.output.dense.weight[:, 8:16] *= 1e-3
        layer.intermediate.dense.weight[5] *= 1e-3
        layer.output.dense.weight[:, 5] *= 1e-3
    groups = encoder_units(net)
    weights = {name: module.weight.detach() for name, module in net.named_modules() if hasattr(module, "weight")}
    head_scores = groups[0].scores(weights.__getitem__, 1)
    neuron_scores = groups[1].scores(weights.__getitem__, 1)
    assert int(head_scores.argmin()) == 1
    assert int(neuron_scores.argmin()) == 5
    pruned, _ = Pruning("ln_structured", amount=1 / 64, head_amount=0.25)._prune_now(net)
    attention = pruned.model.encoder.layer[0].attention.self
    assert attention.num_attention_heads == 3
    # the weakened head is the one gone: the kept value rows are heads 0, 2 and 3
    kept = attention.value.weight.detach()
    expected = torch.cat([layer.attention.self.value.weight[:8], layer.attention.self.value.weight[16:]])
    torch.testing.assert_close(kept, expected.detach())


def test_a_pruned_encoder_round_trips_without_its_checkpoint(four_heads, reviews, tmp_path):
    (X, y), (X_test, _) = reviews
    folder = str(tmp_path / "copy")
    shutil.copytree(four_heads, folder)
    clf = _clf(folder, Pruning("ln_structured", amount=0.5, head_amount=0.25), max_epochs=2).fit(X, y)
    proba = clf.predict_proba(X_test)
    save(clf, tmp_path / "model.skops")
    buffer = io.BytesIO()
    joblib.dump(clf, buffer)
    shutil.rmtree(folder)
    np.testing.assert_allclose(load(tmp_path / "model.skops").predict_proba(X_test), proba, atol=1e-6)
    buffer.seek(0)
    np.testing.assert_allclose(joblib.load(buffer).predict_proba(X_test), proba, atol=1e-6)


def test_pruned_then_quantized_encoder(pretrained, reviews):
    (X, y), (X_test, y_test) = reviews
    clf = _clf(pretrained, Pruning("ln_structured", amount=0.5),
               quantization=Quantization("dynamic_int8")).fit(X, y)
    assert clf.score(X_test, y_test) > 0.7


def test_amounts_are_searchable_and_each_candidate_is_its_own_size(pretrained, reviews):
    (X, y), _ = reviews
    search = make_search(_clf(pretrained, Pruning("ln_structured"), max_epochs=1),
                         {"pruning__amount": [0.25, 0.5], "pruning__head_amount": [0.0, 0.5]}, "grid",
                         cv=2, scoring={"acc": "accuracy", "bytes": "neg_model_bytes"}, refit="acc").fit(X, y)
    sizes = search.cv_results_["mean_test_bytes"]
    assert len(set(np.round(sizes))) == 4  # four different encoders
    assert sizes[np.argmax([p["pruning__amount"] + p["pruning__head_amount"]
                            for p in search.cv_results_["params"]])] == sizes.max()


@pytest.mark.parametrize("bad", [1.0, -0.1, "half"])
def test_bad_head_amount_gets_sklearns_wording(pretrained, reviews, bad):
    (X, y), _ = reviews
    with pytest.raises(InvalidParameterError, match="The 'head_amount' parameter of Pruning must be"):
        _clf(pretrained, Pruning("ln_structured", head_amount=bad)).fit(X, y)


def test_refusals_leave_a_fitted_model_usable(pretrained, reviews):
    (X, y), (X_test, _) = reviews
    clf = _clf(pretrained, Pruning("ln_structured", amount=0.5), max_epochs=1).fit(X, y)
    proba = clf.predict_proba(X_test)
    clf.set_params(pruning=Pruning("ln_structured", amount=0.5, head_amount=0.9))
    with pytest.raises(ValueError, match="'head_amount' parameter of Pruning is too large .* all 4 heads"):
        clf.fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X_test), proba)
    clf.set_params(module__lora=LoRA(r=2), pruning=Pruning("ln_structured"))
    with pytest.raises(ValueError, match="cannot train with LoRA adapters"):
        clf.fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X_test), proba)


def test_unstructured_pruning_still_masks_every_projection(pretrained, reviews):
    (X, y), _ = reviews
    clf = _clf(pretrained, Pruning("l1_unstructured", amount=0.5), max_epochs=1).fit(X, y)
    assert clf.sparsity_ == pytest.approx(0.5, abs=0.01)
    assert _layers(clf)[0].attention.self.num_attention_heads == 4


def test_a_student_keeps_the_bottom_layers_and_learns_from_the_full_model(pretrained, reviews, tmp_path):
    (X, y), (X_test, y_test) = reviews
    full = _clf(pretrained).fit(X, y)
    teacher = _clf(pretrained)  # fitted inside each fit of the student (and shared between fits)
    student = NNClassifier(Transformer(pretrained, max_length=24, pooling="mean", n_layers=1), lr=1e-2,
                           max_epochs=4, random_state=0, distillation=Distillation(teacher, alpha=0.5),
                           **TINY).fit(X, y)
    assert len(_layers(student)) == 1
    assert student.n_params_ < full.n_params_
    assert student.score(X_test, y_test) > 0.7
    save(student, tmp_path / "student.skops")
    np.testing.assert_allclose(load(tmp_path / "student.skops").predict_proba(X_test),
                               student.predict_proba(X_test), atol=1e-6)


def test_layers_heads_neurons_and_int8_are_searched_together(pretrained, reviews):
    (X, y), _ = reviews
    space = {"module__n_layers": [1, 2], "pruning__amount": [0.0, 0.5],
             "quantization": [None, Quantization("dynamic_int8")]}
    search = make_search(_clf(pretrained, Pruning("ln_structured"), max_epochs=1), space, "grid", cv=2,
                         scoring={"acc": "accuracy", "bytes": "neg_model_bytes"}, refit="acc").fit(X, y)
    sizes = dict(zip([(p["module__n_layers"], p["pruning__amount"], p["quantization"] is not None)
                      for p in search.cv_results_["params"]], -search.cv_results_["mean_test_bytes"]))
    assert sizes[(2, 0.0, False)] == max(sizes.values())
    assert sizes[(1, 0.5, True)] == min(sizes.values())
    assert sizes[(1, 0.0, False)] < sizes[(2, 0.0, False)] and sizes[(2, 0.5, False)] < sizes[(2, 0.0, False)]


def test_n_layers_is_checked(pretrained, reviews):
    (X, y), _ = reviews
    with pytest.raises(ValueError, match="n_layers=3 exceeds the 2 encoder layers"):
        NNClassifier(Transformer(pretrained, n_layers=3), max_epochs=1).fit(X, y)
    with pytest.raises(InvalidParameterError, match="The 'n_layers' parameter of Transformer must be"):
        NNClassifier(Transformer(pretrained, n_layers=0), max_epochs=1).fit(X, y)


def _one_head_silenced(path):
    """A built network whose head 2 of layer 0 has large query/key/value rows but feeds nothing."""
    net = _clf(path).module.build(1, 3)
    attention = net.model.encoder.layer[0].attention
    with torch.no_grad():
        for proj in (attention.self.query, attention.self.key, attention.self.value):
            proj.weight[16:24] *= 10
        attention.output.dense.weight[:, 16:24] = 0
    return net


@pytest.mark.parametrize("method, gone", [("taylor_structured", 2), ("ln_structured", None)])
def test_taylor_importance_reads_what_a_head_does_to_the_loss(pretrained, method, gone):
    net = _one_head_silenced(pretrained)
    value = net.model.encoder.layer[0].attention.self.value.weight.detach().clone()
    callback = Pruning(method, amount=1 / 64, head_amount=0.25)._make_callback(
        net, max_epochs=1, steps_per_epoch=1).initialize()
    holder = _Holder(net)
    holder.history = []
    callback.on_train_begin(holder)
    X, y = review_texts(32, seed=3, label="topic")
    target = torch.as_tensor(np.unique(y, return_inverse=True)[1])
    torch.nn.functional.cross_entropy(net(net.encode(X)), target).backward()
    callback.on_grad_computed(holder, named_parameters=list(net.named_parameters()))
    callback._advance(math.inf)
    callback.on_train_end(holder)
    pruned, _ = callback.finish(net)
    kept = pruned.model.encoder.layer[0].attention.self.value.weight.detach()
    heads = [h for h in range(4) if any(torch.equal(kept[8 * k:8 * k + 8], value[8 * h:8 * h + 8])
                                        for k in range(3))]
    assert len(heads) == 3
    assert (gone not in heads) if gone is not None else (2 in heads)


def test_taylor_pruning_fine_tunes_a_smaller_encoder(pretrained, reviews):
    (X, y), (X_test, y_test) = reviews
    clf = _clf(pretrained, Pruning("taylor_structured", amount=0.5, schedule="gradual", start=0.0, end=0.5,
                                   n_steps=2)).fit(X, y)
    assert [row["units_kept"] for row in clf.pruning_summary_] == [2, 32, 2, 32]
    assert clf.score(X_test, y_test) > 0.7


def test_taylor_pruning_needs_a_pretrained_encoder(iris):
    from skopt_nn import MLP

    X, y = iris
    with pytest.raises(ValueError, match="taylor_structured.* ranks the attention heads"):
        NNClassifier(MLP((16,)), max_epochs=1, pruning=Pruning("taylor_structured")).fit(X, y)
