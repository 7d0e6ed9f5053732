"""Quantized networks against their float originals: accuracy, file size and predict time, side by side.

Five parts, all in this one process:

1. **digits MLP((512, 512))** (standardised, 75/25 stratified split, the same
   seed and epochs for every contender): the float network and its
   ``dynamic_int8`` (per tensor and per channel), ``static_int8``,
   ``float16`` and ``bfloat16`` copies. Held-out accuracy, the ``joblib``
   file size, and ``predict`` on ``--rows`` rows (the test rows repeated),
   ``--repeats`` times per contender, *interleaved* (contender A, B, C, A,
   B, C, ...; on these machines the order alone moves a single timing by
   10-40 %), median kept.
2. **pruning and int8 together**: ``ln_structured`` at 50 % alone, int8
   alone and both, by file size and accuracy.
3. **a CNN** (``CNN(input_shape=(1, 8, 8))`` on digits) in float,
   ``dynamic_int8`` (its linear head) and ``static_int8`` (convolutions too).
4. **quantization-aware training** (``qat_int8``) against post-training
   ``static_int8`` and the float network: mean held-out accuracy over
   ``--splits`` stratified splits (each its own seed) for a small MLP and
   the CNN, and the fit time against the float fit.
5. **anchors**, on the bare float ``nn.Module`` of part 1 with no estimator
   around it: torch's own float and dynamic int8 forward passes (so the
   estimator's ratio can be told from the kernel's), torchao's int8
   configurations in eager mode, and ONNX Runtime's float and
   ``quantize_dynamic`` graphs, where installed.

Run: ``python benchmarks/bench_quantization.py [--rows 100000] [--threads 1] [--quick]``
"""

import argparse
import copy
import os
import statistics
import tempfile
import time
import warnings

import joblib
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skopt_nn import CNN, MLP, NNClassifier, Pruning, Quantization, export_onnx
from skopt_nn.specs.quantization import quiet_ao
from skopt_nn.training._runtime import predict_rows


def file_size(model, folder, name):
    path = os.path.join(folder, name + ".joblib")
    joblib.dump(model, path)
    return os.path.getsize(path)


def interleaved(calls, repeats):
    """Median seconds of each call, the calls taken in turn ``repeats`` times."""
    times = {name: [] for name in calls}
    for call in calls.values():  # warm-up
        call()
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def digits_split():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    return (scaler.transform(X_train).astype(np.float32), scaler.transform(X_test).astype(np.float32),
            y_train, y_test)


def mlp_figures(data, args, folder):
    X_train, X_test, y_train, y_test = data
    X_big = np.resize(X_test, (args.rows, X_test.shape[1]))

    def fit(quantization=None, pruning=None):
        return NNClassifier(MLP((512, 512)), lr=1e-3, max_epochs=args.epochs, random_state=0,
                            quantization=quantization, pruning=pruning).fit(X_train, y_train)

    models = {
        "float32": fit(),
        "dynamic_int8": fit(Quantization("dynamic_int8")),
        "dynamic_int8 per channel": fit(Quantization("dynamic_int8", per_channel=True)),
        "static_int8": fit(Quantization("static_int8")),
        "float16": fit(Quantization("float16")),
        "bfloat16": fit(Quantization("bfloat16")),
    }
    seconds = interleaved({name: (lambda m=m: m.predict(X_big)) for name, m in models.items()}, args.repeats)
    out = {}
    for name, model in models.items():
        out[name] = {"accuracy": model.score(X_test, y_test), "bytes": file_size(model, folder, name),
                     "seconds": seconds[name]}
    prune = Pruning("ln_structured", amount=0.5, schedule="gradual")
    both = {
        "ln_structured 50%": fit(pruning=prune),
        "ln_structured 50% + dynamic_int8": fit(Quantization("dynamic_int8"), pruning=prune),
    }
    for name, model in both.items():
        out[name] = {"accuracy": model.score(X_test, y_test), "bytes": file_size(model, folder, name)}
    return out, models["float32"]


def cnn_figures(data, args, folder):
    X_train, X_test, y_train, y_test = data
    X_big = np.resize(X_test, (args.rows // 5, X_test.shape[1]))

    def fit(quantization=None):
        return NNClassifier(CNN(input_shape=(1, 8, 8)), lr=3e-3, max_epochs=args.epochs, random_state=0,
                            quantization=quantization).fit(X_train, y_train)

    models = {"float32": fit(), "dynamic_int8": fit(Quantization("dynamic_int8")),
              "static_int8": fit(Quantization("static_int8"))}
    seconds = interleaved({name: (lambda m=m: m.predict(X_big)) for name, m in models.items()}, args.repeats)
    return {name: {"accuracy": m.score(X_test, y_test), "bytes": file_size(m, folder, "cnn " + name),
                   "seconds": seconds[name]} for name, m in models.items()}, len(X_big)


def qat_figures(args):
    X, y = load_digits(return_X_y=True)
    methods = ("float32", "static_int8", "qat_int8")
    out = {}
    for name, module in (("MLP((64, 64))", MLP((64, 64))), ("CNN", CNN(input_shape=(1, 8, 8)))):
        acc = {m: [] for m in methods}
        secs = {m: [] for m in methods}
        for seed in range(args.splits):
            X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed,
                                                                stratify=y)
            scaler = StandardScaler().fit(X_train)
            X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
            for method in methods:
                quantization = None if method == "float32" else Quantization(method)
                start = time.perf_counter()
                clf = NNClassifier(module, lr=3e-3, max_epochs=args.epochs, random_state=seed,
                                   quantization=quantization).fit(X_train, y_train)
                secs[method].append(time.perf_counter() - start)
                acc[method].append(clf.score(X_test, y_test))
        out[name] = {m: {"accuracy": float(np.mean(acc[m])), "fit_vs_float": sum(secs[m]) / sum(secs["float32"])}
                     for m in methods}
    return out


def anchor_figures(float_model, X, args, folder):
    """The bare module's forward passes: torch float/int8, torchao eager, ONNX Runtime float/int8."""
    module = copy.deepcopy(float_model.module_).eval().cpu()
    X_t = torch.as_tensor(X)
    batch = predict_rows(module, X.shape[1])  # the estimator's own batches
    share = {}  # contenders timed on a tenth of the rows (torchao's slow ones), scaled back up

    def forward(m, rows=len(X_t)):
        def run():
            with torch.inference_mode():
                for i in range(0, rows, batch):
                    m(X_t[i:min(i + batch, rows)])
        return run

    with quiet_ao():
        from torch.ao.quantization import quantize_dynamic

        int8 = quantize_dynamic(copy.deepcopy(module), {torch.nn.Linear}, dtype=torch.qint8)
    calls = {"torch float32": forward(module), "torch.ao dynamic int8": forward(int8)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

            for name, config in (("torchao int8 weight-only", Int8WeightOnlyConfig()),
                                 ("torchao int8 dynamic", Int8DynamicActivationInt8WeightConfig())):
                m = copy.deepcopy(module)
                quantize_(m, config)
                calls[name] = forward(m, len(X_t) // 10)
                share[name] = 10
    except Exception as exc:  # torchao missing, or its API moved
        print(f"  (torchao skipped: {type(exc).__name__}: {str(exc)[:80]})")
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic as ort_quantize

        path = os.path.join(folder, "mlp.onnx")
        export_onnx(float_model, path)
        ort_quantize(path, path + ".int8", weight_type=QuantType.QInt8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        for name, p in (("ONNX Runtime float32", path), ("ONNX Runtime int8", path + ".int8")):
            session = ort.InferenceSession(p, options, providers=["CPUExecutionProvider"])
            calls[name] = lambda s=session: [s.run(None, {"X": X[i:i + batch]}) for i in range(0, len(X), batch)]
    except ImportError:
        print('  (ONNX Runtime skipped: pip install "skopt-nn[onnx]")')
    seconds = interleaved(calls, args.repeats)
    return {name: t * share.get(name, 1) for name, t in seconds.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="predict rows (default 100 000)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 20)")
    parser.add_argument("--repeats", type=int, default=None, help="timings per contender (default 7)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps the ratios steady)")
    parser.add_argument("--splits", type=int, default=None, help="train/test splits for qat (default 3)")
    parser.add_argument("--quick", action="store_true", help="fewer rows, epochs and repeats")
    args = parser.parse_args(argv)
    args.rows = args.rows or (20_000 if args.quick else 100_000)
    args.epochs = args.epochs or (5 if args.quick else 20)
    args.repeats = args.repeats or (2 if args.quick else 7)
    args.splits = args.splits or (1 if args.quick else 3)
    torch.set_num_threads(args.threads)
    data = digits_split()
    with tempfile.TemporaryDirectory() as folder:
        mlp, float_model = mlp_figures(data, args, folder)
        cnn, cnn_rows = cnn_figures(data, args, folder)
        qat = qat_figures(args)
        X_big = np.resize(data[1], (args.rows, data[1].shape[1]))
        anchors = anchor_figures(float_model, X_big, args, folder)

    ref = mlp["float32"]
    print(f"digits, MLP((512, 512)), {args.epochs} epochs; predict {args.rows:,} rows, {args.threads} torch "
          f"thread(s), interleaved median of {args.repeats}; file = joblib.dump")
    print(f"  {'model':<34} {'accuracy':>8} {'file':>11} {'smaller':>8} {'predict':>8} {'faster':>7}")
    for name, r in mlp.items():
        timing = (f"{r['seconds']:7.3f}s {ref['seconds'] / r['seconds']:6.2f}x" if "seconds" in r else "")
        print(f"  {name:<34} {r['accuracy']:8.4f} {r['bytes']:>9,} B {ref['bytes'] / r['bytes']:7.2f}x {timing}")
    cref = cnn["float32"]
    print(f"CNN(input_shape=(1, 8, 8)) on digits, predict {cnn_rows:,} rows:")
    for name, r in cnn.items():
        print(f"  {name:<34} {r['accuracy']:8.4f} {r['bytes']:>9,} B {cref['bytes'] / r['bytes']:7.2f}x "
              f"{r['seconds']:7.3f}s {cref['seconds'] / r['seconds']:6.2f}x")
    print(f"quantization-aware training: mean held-out accuracy over {args.splits} split(s), "
          f"{args.epochs} epochs, qat_start=0.5:")
    for name, r in qat.items():
        print(f"  {name:<16} " + "  ".join(
            f"{m} {v['accuracy']:.4f} (fit {v['fit_vs_float']:.2f}x)" for m, v in r.items()))
    aref = anchors["torch float32"]
    print(f"anchors: the bare float module of the MLP, {args.rows:,} rows in batches of "
          f"{predict_rows(float_model.module_, 64):,} (as the estimator's predict) "
          "(torchao timed on a tenth of them, times 10):")
    for name, seconds in anchors.items():
        base = anchors["ONNX Runtime float32"] if name == "ONNX Runtime int8" else aref
        print(f"  {name:<34} {seconds:7.3f}s  {base / seconds:5.2f}x faster than "
              f"{'ORT float32' if name == 'ONNX Runtime int8' else 'torch float32'}")
    return {"mlp": mlp, "cnn": cnn, "qat": qat, "anchors": anchors}


if __name__ == "__main__":
    main()
