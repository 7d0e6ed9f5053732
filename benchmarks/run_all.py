"""Run every benchmark in one process and print its ratios.

Sections, each measured side by side in this run:

1. fit / predict time of NNClassifier against a hand-written PyTorch loop,
   plain skorch and sklearn's MLPClassifier (``bench_core.py``);
2. growth of fit time from 10k to 1M rows (``bench_scale.py growth``);
3. speed-up of a 36-fit GridSearchCV with ``n_jobs=2`` (``bench_scale.py search``);
4. predict time of dense, pruned and physically shrunk nets (``bench_pruning.py``);
5. teacher passes per distillation fit (counted, not timed), and the share of
   a student-teacher accuracy gap that distillation closes
   (``bench_distillation.py``);
6. peak memory of a 1M x 100 fit (``bench_scale.py memory``);
7. epochs, best CV score and wall time of the ASHA search against a full
   random search and halving, on joblib and Ray (``bench_asha.py``);
8. the thread policy next to a CPU-bound competitor, the small-data overhead
   against a hand loop and the cold n_jobs=2 search (``bench_threads.py``);
9. fused searches against one-by-one searches: grid, two architectures,
   random, ASHA, and the speed-up by number of members and by width
   (``bench_fused.py``);
10. sparse fit time against MLPClassifier on the same CSR data, the peak
    memory of a 100 000 x 50 000 sparse fit over the CSR size, and multilabel
    subset accuracy next to MLPClassifier's (``bench_inputs.py``);
11. a distillation search with the teacher shared and not: teacher fits,
    wall time against the same grid without a teacher, and a distilled fit
    against a plain one (``bench_teacher_reuse.py``);
12. the large-model recipe: bfloat16/float16 fits against float32, gradient
    accumulation against one large batch, clipping on a diverging SGD, and
    LoRA, freezing and full fine-tuning of a small pretrained transformer
    (``bench_large.py``);
13. quantization: held-out accuracy, joblib file size and predict time of
    the int8 and 16-bit copies of a digits MLP((512, 512)) against the float
    network, pruning and int8 together, a CNN with static int8, and the bare
    torch / torchao / ONNX Runtime kernels as anchors, and quantization-aware
    training against post-training int8 (``bench_quantization.py``).

Run: ``python benchmarks/run_all.py [--quick]`` (``--quick``: smaller sizes,
for a smoke run; the figures in the docs come from the full run).
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def teacher_passes():
    import numpy as np
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from skopt_nn import MLP, Distillation, NNClassifier

    class CountingTeacher(ClassifierMixin, BaseEstimator):
        calls = []

        def fit(self, X, y):
            self.model_ = LogisticRegression(max_iter=500).fit(X, y)
            self.classes_ = self.model_.classes_
            return self

        def predict_proba(self, X):
            CountingTeacher.calls.append(len(X))
            return self.model_.predict_proba(X)

    X, y = load_iris(return_X_y=True)
    epochs = 10
    NNClassifier(MLP((16,)), distillation=Distillation(CountingTeacher()), max_epochs=epochs,
                 n_iter_no_change=epochs + 1, random_state=0).fit(X, y)
    passes = sum(CountingTeacher.calls) / len(X)
    print(f"\n[distillation] {epochs}-epoch fit on {len(X)} rows: {passes:.2f} teacher passes over the "
          f"training rows ({len(CountingTeacher.calls)} call(s)); a per-epoch design would make {epochs}")
    return passes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)

    import bench_asha
    import bench_core
    import bench_distillation
    import bench_fused
    import bench_inputs
    import bench_large
    import bench_pruning
    import bench_quantization
    import bench_scale
    import bench_teacher_reuse
    import bench_threads
    import torch

    print("[core]")
    core = bench_core.main(["--rows", "10000" if args.quick else "50000", "--repeats", "1" if args.quick else "3"])
    growth = bench_scale.growth(100_000 if args.quick else 1_000_000)
    search = bench_scale.search()
    print("\n[pruning]")
    pruning = bench_pruning.main(["--rows", "20000", "--epochs", "5", "--repeats", "2"] if args.quick else [])
    passes = teacher_passes()
    print()
    gap = bench_distillation.main(["--seeds", "2"] if args.quick else [])
    memory = bench_scale.memory(200_000 if args.quick else 1_000_000)
    asha = bench_asha.main(["--rows", "300", "--candidates", "9", "--max-epochs", "9"] if args.quick else [])
    # Earlier sections pin torch to one thread for their own figures; torch's
    # setting caps what n_threads=None may use, so give the policy the machine.
    torch.set_num_threads(os.cpu_count() or 1)
    threads = bench_threads.main(["--quick"] if args.quick else [])
    busy = threads["busy"]
    print("\n[fused]")
    fused = bench_fused.main(["--quick"] if args.quick else [])
    print()
    inputs = bench_inputs.main(["--quick"] if args.quick else [])
    print("\n[teacher reuse]")
    reuse = bench_teacher_reuse.main(["--quick"] if args.quick else [])
    print("\n[large models]")
    large = bench_large.main(["--quick"] if args.quick else [])
    print("\n[quantization]")
    torch.set_num_threads(1)  # its own figures are one-thread, as the pruning section's
    quant = bench_quantization.main(["--quick"] if args.quick else [])

    n_big, hand_big, ours_big = growth[-1]
    rows = [
        ("NNClassifier fit / hand-written loop", core["fit"]["NNClassifier"], "<= 1.15"),
        ("skorch fit / hand-written loop", core["fit"]["skorch"], "(anchor)"),
        ("sklearn MLP fit / hand-written loop", core["fit"].get("sklearn MLP", float("nan")), "(anchor)"),
        ("NNClassifier predict / hand-written loop", core["predict"], "<= 1.10"),
        (f"fit / hand loop at {n_big:,} rows, 1 epoch", ours_big / hand_big, ""),
        ("search n_jobs=2 speed-up, workers started", search["serial"] / search["warm"], ">= 1.6"),
        ("search n_jobs=2 speed-up, incl. worker start", search["serial"] / search["cold"], ">= 1.6"),
        ("structured 50% predict / dense", pruning["ln_structured 50%, shrunk"], "<= 0.625"),
        ("unstructured 90% predict / dense", pruning["global_l1 90%, zeros"], "~ 1.0"),
        ("teacher passes per distillation fit", passes, "1"),
        ("student-teacher gap closed by distillation", gap, ">= 0.30"),
        ("peak memory beyond the pre-fit RSS (MB)", memory["peak"] - memory["before"], "<= 300"),
        ("ASHA epochs / full random search", asha["asha"]["epochs"], "<= 0.20"),
        ("full search best cv - ASHA best cv", asha["asha"]["gap"], "<= 0.01"),
        ("ASHA wall time / full random search", asha["asha"]["wall"], ""),
        ("ASHA epochs / halving epochs", asha["asha_vs_halving"]["epochs"], ""),
        ("ASHA wall time / halving", asha["asha_vs_halving"]["wall"], ""),
        ("ASHA on Ray epochs / full random search", asha["asha, ray"]["epochs"], "<= 0.20"),
        ("full search best cv - ASHA on Ray best cv", asha["asha, ray"]["gap"], "<= 0.01"),
        ("ASHA on Ray wall time / full random search", asha["asha, ray"]["wall"], ""),
        ("ASHA on Ray wall time / ASHA on joblib", asha["asha, ray"]["vs_joblib"], "<= 3 (goal 1.5)"),
    ]
    for name in ("NNClassifier", "PyTorch loop", "sklearn MLP"):
        ours = name == "NNClassifier"
        rows += [
            (f"{name}: small, busy, default / 1 thread", busy[name]["small_busy_vs_1"], "<= 1.15" if ours else ""),
            (f"{name}: small, busy / quiet", busy[name]["small_busy_vs_quiet"], "<= 1.5" if ours else ""),
            (f"{name}: large, quiet, default / best", busy[name]["large_quiet_vs_best"], "<= 1.05" if ours else ""),
            (f"{name}: large, busy, default / best", busy[name]["large_busy_vs_best"], "<= 1.10" if ours else ""),
        ]
    rows += [
        ("small data (4000 x 40) fit / hand loop", threads["overhead"], "<= 1.10"),
        ("cold search (8000 x 40) n_jobs=2 speed-up", threads["search"], ">= 1.3"),
        ("sparse fit / MLPClassifier on the same CSR", inputs["sparse"]["vs_mlp"], ""),
        ("sparse first layer / batches densified", inputs["sparse"]["vs_dense_batches"], "< 1"),
        ("100k x 50k sparse fit: peak growth (MB)", inputs["memory"]["growth_mb"], "< 1500"),
        ("  ... over the CSR size", inputs["memory"]["growth_over_csr"], ""),
        ("multilabel subset accuracy, NNClassifier", inputs["multilabel"]["NNClassifier"], ""),
        ("multilabel subset accuracy, MLPClassifier", inputs["multilabel"]["MLPClassifier"], "(anchor)"),
    ]
    rows += [
        ("fused grid (36 fits) / GridSearchCV n_jobs=1", fused["grid"]["speedup"], ">= 3 (goal 5)"),
        ("fused grid speed-up over GridSearchCV n_jobs=2", fused["grid"]["speedup_vs_2"], "> 1"),
        ("fused grid max |d mean_test_score|", fused["grid"]["score_diff"], "<= 0.02"),
        ("fused grid |d best_score_|", fused["grid"]["best_diff"], "<= 0.01"),
        ("fused two-architecture grid speed-up", fused["architectures"]["speedup"], ">= 2"),
        ("fused random search speed-up", fused["random"]["speedup"], ""),
        ("fused ASHA speed-up", fused["asha"]["speedup"], ""),
        ("fused ASHA epochs / full random search", fused["asha"]["epochs_fused"], "<= 0.20"),
    ]
    for name, e in fused["ensemble"].items():
        rows += [
            (f"n_ensemble=5 / one net log-loss, {name}", e["logloss_k"] / e["logloss_1"], "< 1"),
            (f"n_ensemble=5 - one net accuracy, {name}", e["acc_k"] - e["acc_1"], ">= 0"),
            (f"n_ensemble=5 / one net fit time, {name}", e["time_ratio"], "< 5"),
        ]
    rows += [(f"fused training speed-up, K={k}", v, "") for k, v in fused["members"].items()]
    rows += [(f"fused training speed-up, 16 x width {w}", v, "") for w, v in fused["width"].items()]
    rows += [
        ("12x3 grid + refit: teacher fits, shared", reuse["fits_shared"], "4"),
        ("12x3 grid + refit: teacher fits, one per fit", reuse["fits_alone"], "(anchor, 37)"),
        ("2x2 teacher-param grid: teacher fits, shared", reuse["param_fits_shared"], "7"),
        ("distillation grid / plain grid, shared", reuse["shared"], "<= 1.7 (goal 1.5)"),
        ("the same in CPU time", reuse["shared_cpu"], "<= 1.7 (goal 1.5)"),
        ("distillation grid / plain grid, one per fit", reuse["alone"], "(anchor)"),
        ("distilled fit / plain fit, frozen teacher (CPU)", reuse["step"], "<= 1.15 (goal 1.05)"),
    ]
    precision = large["precision"]
    bf16_target = ">= 1.3 (goal 1.5)" if precision["flags"] else "(no bf16 instructions: emulated)"
    rows += [
        ("bfloat16 fit speed-up over float32", precision["seconds"]["float32"] / precision["seconds"]["bfloat16"],
         bf16_target),
        ("float32 - bfloat16 test accuracy", precision["acc"]["float32"] - precision["acc"]["bfloat16"], "<= 0.02"),
        ("float16 fit speed-up over float32", precision["seconds"]["float32"] / precision["seconds"]["float16"], ""),
        ("hand loop bfloat16 speed-up (anchor)", precision["loop_speedup_bf16"], "(anchor)"),
        ("accumulation 32 x 4 vs 128: max |d proba|", large["accumulation"]["max_proba_diff"], "<= 1e-3"),
        ("train accuracy lr 0.2 SGD, max_grad_norm=1.0", large["clipping"]["clipped"], "(0.10 unclipped)"),
    ]
    for name, v in large.get("lora", {}).get("variants", {}).items():
        rows += [
            (f"{name}: epoch time / full fine-tuning", v["epoch_vs_full"], ""),
            (f"{name}: trainable share of the weights", v["share"], "<= 0.05" if "LoRA" in name else ""),
            (f"{name}: test accuracy", v["accuracy"], ""),
        ]
    mlp, cnn = quant["mlp"], quant["cnn"]
    rows += [
        ("int8 MLP((512,512)): float - int8 test accuracy",
         mlp["float32"]["accuracy"] - mlp["dynamic_int8"]["accuracy"], "<= 0.01"),
        ("int8 MLP((512,512)): joblib file smaller by", mlp["float32"]["bytes"] / mlp["dynamic_int8"]["bytes"], ">= 3"),
        ("int8 MLP((512,512)): predict faster by", mlp["float32"]["seconds"] / mlp["dynamic_int8"]["seconds"],
         ">= 1.5 (goal 2.5)"),
        ("static_int8 MLP: predict faster by", mlp["float32"]["seconds"] / mlp["static_int8"]["seconds"], ""),
        ("pruned 50% + int8 file / smaller of the two", mlp["ln_structured 50% + dynamic_int8"]["bytes"]
         / min(mlp["ln_structured 50%"]["bytes"], mlp["dynamic_int8"]["bytes"]), "< 1"),
        ("CNN float - static_int8 test accuracy", cnn["float32"]["accuracy"] - cnn["static_int8"]["accuracy"],
         "<= 0.02"),
        ("CNN qat_int8 - static_int8 accuracy, mean", quant["qat"]["CNN"]["qat_int8"]["accuracy"]
         - quant["qat"]["CNN"]["static_int8"]["accuracy"], ""),
    ]
    print("\n[summary] measured in this run")
    print(f"{'measure':<46} {'value':>8}  target")
    for name, value, target in rows:
        print(f"{name:<46} {value:8.2f}  {target}")

if __name__ == "__main__":
    main()
