"""
Multi-fidelity search that continues training (ASHA)
====================================================

``make_search(..., method="asha")`` trains every candidate for one epoch,
then lets only the best third go on to three epochs, the best third of those
to nine, and so on up to ``max_epochs``. Unlike successive halving's
restarts, a promoted candidate *continues* from where it stopped, so the
candidate that reaches the top rung is exactly the model a full ``fit`` would
give. Here it searches the same candidates as a full random search with a
fraction of the epochs.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import MLP, Categorical, NNClassifier, Real, make_search
from skopt_nn.plotting import plot_rungs

X, y = load_digits(return_X_y=True)
X, y = X[:600], y[:600]
pipe = make_pipeline(StandardScaler(), NNClassifier(MLP(), max_epochs=9, random_state=0))
space = {
    "lr": Real(1e-4, 0.3, log=True),
    "module__hidden_layer_sizes": Categorical([(32,), (128, 64)]),
    "lr_schedule": Categorical(["constant", "cosine"]),
}

# %%
# Both searches draw the same nine candidates (same ``random_state``).
asha = make_search(pipe, space, method="asha", n_iter=9, cv=3, random_state=0).fit(X, y)
full = make_search(pipe, space, method="random", n_iter=9, cv=3, random_state=0).fit(X, y)

print(f"rungs (epochs): {asha.rungs_}")
print(f"ASHA: best cv {asha.best_score_:.3f} with {asha.total_epochs_} epochs")
print(f"full: best cv {full.best_score_:.3f} with {9 * 9 * 3} epochs")
print("epochs each candidate reached:", asha.cv_results_["epochs"].tolist())

# %%
# Each line is one candidate's mean validation score at the rungs it reached;
# the thick one was chosen and refitted on all the data.
plot_rungs(asha)
plt.show()
