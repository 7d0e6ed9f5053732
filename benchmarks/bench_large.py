"""The large-model recipe: mixed precision, accumulation, clipping, LoRA and freezing.

Measured side by side in one run:

* **precision**: ``NNClassifier(MLP((1024, 1024)))`` on ``--rows`` x 512
  generated rows (10 classes, ``make_classification``), ``--epochs`` epochs
  of batches of 256 rows, fitted with ``precision="float32"``,
  ``"bfloat16"`` and ``"float16"`` in alternation (median of ``--repeats``),
  next to a hand-written PyTorch loop with and without
  ``torch.autocast("cpu", torch.bfloat16)``. Printed: fit time over the
  float32 fit, and held-out accuracy. Whether the CPU has bfloat16
  instructions (``avx512_bf16``/``amx_bf16`` in /proc/cpuinfo) is printed
  first: without them bfloat16 is emulated and slower.
* **accumulation**: ``batch_size=32, gradient_accumulation_steps=4`` against
  ``batch_size=128`` (same seed, plain SGD) on digits: the largest
  difference in ``predict_proba``, and the fit-time ratio.
* **clipping**: SGD with momentum 0.9 at lr 0.2 on raw digits pixels, with
  and without ``max_grad_norm=1.0``: training accuracy.
* **LoRA vs full fine-tuning**: a small BERT (4 layers, hidden size 128)
  built here, trained on a generated topic-and-mood text task and saved with
  ``save_pretrained`` (the "pretrained" checkpoint), then fine-tuned through
  ``NNClassifier(Transformer(...))`` on a second task (mood only) in full,
  with ``LoRA(r=4)`` and ``LoRA(r=8)`` on query/value, with ``freeze=2``
  and with ``freeze="all"`` (head only): median time per epoch over full
  fine-tuning, trainable parameters and their share, held-out accuracy.
  Needs the ``transformers`` extra; skipped with a note without it.

Run: ``python benchmarks/bench_large.py [--quick]``
"""

import argparse
import os
import statistics
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits, make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

from skopt_nn import MLP, NNClassifier


def cpu_flags():
    """The bfloat16-related instruction sets this CPU reports."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return sorted(f for f in flags if "bf16" in f or f.startswith("amx"))


def data(rows, features=512, seed=0):
    X, y = make_classification(rows, features, n_informative=64, n_classes=10, n_clusters_per_class=1,
                               class_sep=2.0, random_state=seed)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    return train_test_split(X, y, test_size=0.2, random_state=seed)


def hand_loop(X, y, epochs, dtype, batch_size=256, seed=0):
    """A plain PyTorch loop over the same network, optionally under autocast."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(X.shape[1], 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                        nn.Linear(1024, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(Xt), generator=g)
        for i in range(0, len(Xt), batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad()
            ctx = torch.autocast("cpu", dtype=dtype) if dtype is not None else _null()
            with ctx:
                loss = nn.functional.cross_entropy(net(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return time.perf_counter() - start


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def precision_figures(rows, epochs, repeats):
    X_train, X_test, y_train, y_test = data(rows)
    out = {"flags": cpu_flags()}
    times = {k: [] for k in ("float32", "bfloat16", "float16", "loop float32", "loop bfloat16")}
    acc = {}
    for _ in range(repeats):  # alternated, so drift in the machine's speed hits all alike
        for precision in ("float32", "bfloat16", "float16"):
            net = NNClassifier(MLP((1024, 1024)), batch_size=256, max_epochs=epochs, n_iter_no_change=None,
                               precision=precision, random_state=0)
            start = time.perf_counter()
            net.fit(X_train, y_train)
            times[precision].append(time.perf_counter() - start)
            acc[precision] = net.score(X_test, y_test)
        times["loop float32"].append(hand_loop(X_train, y_train, epochs, None))
        times["loop bfloat16"].append(hand_loop(X_train, y_train, epochs, torch.bfloat16))
    med = {k: statistics.median(v) for k, v in times.items()}
    out["speedup_bf16"] = med["float32"] / med["bfloat16"]
    out["speedup_fp16"] = med["float32"] / med["float16"]
    out["loop_speedup_bf16"] = med["loop float32"] / med["loop bfloat16"]
    out["acc"] = acc
    out["acc_diff_bf16"] = acc["float32"] - acc["bfloat16"]
    out["seconds"] = med
    return out


def accumulation_figures(repeats):
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    kw = dict(module=MLP((128,)), optimizer="sgd", lr=0.05, max_epochs=10, n_iter_no_change=None, random_state=0)
    times = {"large": [], "micro": []}
    for _ in range(repeats):
        start = time.perf_counter()
        large = NNClassifier(batch_size=128, **kw).fit(X, y)
        times["large"].append(time.perf_counter() - start)
        start = time.perf_counter()
        micro = NNClassifier(batch_size=32, gradient_accumulation_steps=4, **kw).fit(X, y)
        times["micro"].append(time.perf_counter() - start)
    diff = float(np.abs(large.predict_proba(X) - micro.predict_proba(X)).max())
    return {"max_proba_diff": diff,
            "time_ratio": statistics.median(times["micro"]) / statistics.median(times["large"])}


def clipping_figures():
    X, y = load_digits(return_X_y=True)  # raw pixels, 0..16
    kw = dict(module=MLP((64,)), optimizer="sgd", lr=0.2, momentum=0.9, max_epochs=20, random_state=0)
    out = {}
    for name, clip in (("unclipped", None), ("clipped", 1.0)):
        try:
            out[name] = NNClassifier(max_grad_norm=clip, **kw).fit(X, y).score(X, y)
        except ValueError:  # diverged
            out[name] = float("nan")
    return out


def lora_figures(rows, epochs, repeats):
    """LoRA, freezing and full fine-tuning of one small pretrained checkpoint, side by side."""
    import tempfile

    import transformers

    from skopt_nn import LoRA, LRSchedule, Transformer
    from skopt_nn.specs._hf_testing import review_texts, tiny_checkpoint

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = tiny_checkpoint(os.path.join(tmp, "base"), hidden_size=128, num_layers=4)
        # Post-norm BERT from scratch needs a warm-up: at lr 1e-3 without one it
        # stalled near 0.5 here, with one it reached 1.0 in 8 epochs.
        warmup = LRSchedule("linear", warmup_epochs=1)
        pre = NNClassifier(Transformer(base, max_length=32), lr=1e-3, lr_schedule=warmup, max_epochs=8,
                           batch_size=32, n_iter_no_change=None, early_stopping=False, random_state=0)
        pre.fit(*review_texts(rows, seed=0, label="both"))
        out["pretraining accuracy"] = pre.score(*review_texts(1000, seed=3, label="both"))
        path = os.path.join(tmp, "pretrained")
        transformers.utils.logging.disable_progress_bar()
        pre.module_.model.save_pretrained(path)
        pre.module_.tokenizer.save_pretrained(path)
        X, y = review_texts(rows, seed=1)
        X_test, y_test = review_texts(1000, seed=2)
        # (module options, lr): full fine-tuning wants a smaller rate than
        # adapters or a lone head (at 3e-3 it fell to 0.50 here)
        variants = {
            "full fine-tuning": (dict(), 5e-4),
            "LoRA r=4": (dict(lora=LoRA(r=4)), 3e-3),
            "LoRA r=8": (dict(lora=LoRA(r=8)), 3e-3),
            "freeze=2": (dict(freeze=2), 5e-4),
            'freeze="all"': (dict(freeze="all"), 3e-3),
        }
        epoch_times = {name: [] for name in variants}
        for _ in range(repeats):  # alternated, so drift in the machine's speed hits all alike
            for name, (kw, lr) in variants.items():
                clf = NNClassifier(Transformer(path, max_length=32, **kw), lr=lr, lr_schedule=warmup,
                                   max_epochs=epochs, batch_size=32, n_iter_no_change=None,
                                   early_stopping=False, random_state=0).fit(X, y)
                epoch_times[name] += list(clf.history_[:, "dur"])
                out[name] = {"trainable": clf.n_trainable_params_, "params": clf.n_params_,
                             "share": clf.n_trainable_params_ / clf.n_params_,
                             "accuracy": clf.score(X_test, y_test), "lr": lr}
        full = statistics.median(epoch_times["full fine-tuning"])
        out = {"pretraining accuracy": out.pop("pretraining accuracy"), "variants": out}
        for name in variants:
            v = out["variants"][name]
            v["epoch_s"] = statistics.median(epoch_times[name])
            v["epoch_vs_full"] = v["epoch_s"] / full
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and repeats")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    rows = args.rows or (5_000 if args.quick else 20_000)
    epochs = args.epochs or (1 if args.quick else 2)
    repeats = args.repeats or (1 if args.quick else 3)
    warnings.simplefilter("ignore", UserWarning)
    out = {}
    out["precision"] = p = precision_figures(rows, epochs, repeats)
    print(f"CPU bfloat16 instructions: {', '.join(p['flags']) or 'none (bfloat16 is emulated)'}; "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cores")
    print(f"MLP((1024, 1024)), {rows:,} x 512, {epochs} epochs, batch 256, median of {repeats}:")
    for name in ("float32", "bfloat16", "float16"):
        print(f"  NNClassifier precision={name:<9} {p['seconds'][name]:7.2f} s  "
              f"float32 / this {p['seconds']['float32'] / p['seconds'][name]:5.2f}x  "
              f"test accuracy {p['acc'][name]:.4f}")
    print(f"  hand loop float32 / bfloat16 autocast: {p['loop_speedup_bf16']:.2f}x "
          f"({p['seconds']['loop float32']:.2f} s vs {p['seconds']['loop bfloat16']:.2f} s)")
    out["accumulation"] = a = accumulation_figures(repeats)
    print(f"accumulation: batch 32 x 4 vs batch 128 (SGD, digits, 10 epochs): max |d predict_proba| "
          f"{a['max_proba_diff']:.2e}, fit time ratio {a['time_ratio']:.2f}")
    out["clipping"] = c = clipping_figures()
    print(f"clipping: SGD lr 0.2 momentum 0.9 on raw digits: train accuracy {c['unclipped']:.3f} unclipped, "
          f"{c['clipped']:.3f} with max_grad_norm=1.0")
    try:
        import peft  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        print('LoRA vs full fine-tuning: skipped (pip install "skopt-nn[transformers]")')
        return out
    text_rows = 400 if args.quick else 1_200
    text_epochs = 2 if args.quick else 8
    out["lora"] = lora = lora_figures(text_rows, text_epochs, repeats)
    print(f"LoRA vs full fine-tuning: BERT 4 layers x 128 (pretraining task accuracy "
          f"{lora['pretraining accuracy']:.3f}), {text_rows:,} sentences, {text_epochs} epochs, batch 32, "
          "test 1,000:")
    for name, r in lora["variants"].items():
        print(f"  {name:<17} lr {r['lr']:.0e} {r['epoch_s'] * 1000:6.0f} ms/epoch  / full {r['epoch_vs_full']:5.2f}x  "
              f"trainable {r['trainable']:>7,} of {r['params']:,} ({100 * r['share']:5.2f} %)  "
              f"test accuracy {r['accuracy']:.3f}")
    return out


if __name__ == "__main__":
    main()
