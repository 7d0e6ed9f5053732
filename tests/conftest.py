import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris

# The suite runs on 2-core CI machines next to other processes: one torch
# thread per test process keeps timings steady and avoids oversubscription.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def iris():
    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    return X.astype(np.float32), y


@pytest.fixture(scope="session")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(scope="module")
def hf_offline():
    """Hugging Face's libraries told that there is no network (tests build their checkpoints)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A randomly initialised 2-layer BERT (hidden size 32) with its tokenizer, written to disk."""
    from skopt_nn.specs._hf_testing import tiny_checkpoint

    return tiny_checkpoint(str(tmp_path_factory.mktemp("hf") / "tiny"))


@pytest.fixture(scope="session")
def pretrain(tmp_path_factory):
    """``pretrain(checkpoint)``: a tiny checkpoint trained on topic-and-mood labels, saved as a pretrained one."""

    def train(checkpoint):
        from skopt_nn import NNClassifier, Transformer
        from skopt_nn.specs._hf_testing import review_texts

        X, y = review_texts(400, seed=0, label="both")
        clf = NNClassifier(Transformer(checkpoint, max_length=24), lr=3e-3, max_epochs=8, batch_size=32,
                           random_state=0, lr_schedule="constant", early_stopping=False).fit(X, y)
        path = str(tmp_path_factory.mktemp("hf") / "pretrained")
        clf.module_.model.save_pretrained(path)
        clf.module_.tokenizer.save_pretrained(path)
        return path

    return train
