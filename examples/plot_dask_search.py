"""
A search spread over a Dask cluster
===================================

Every search that :func:`~skopt_nn.make_search` builds runs its fits through
joblib, so a Dask cluster takes them on with one ``parallel_config`` block
around ``fit``: the search and the estimator stay as they are. Here the
cluster is a two-worker ``LocalCluster``; give ``Client`` the address of a
real scheduler to use more machines.
"""

# %%
import joblib
from dask.distributed import Client, LocalCluster
from sklearn.datasets import load_iris
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import MLP, NNClassifier, Real, make_search, search_progress

X, y = load_iris(return_X_y=True)
pipe = make_pipeline(StandardScaler(), NNClassifier(MLP((16,)), max_epochs=15, random_state=0))

# %%
# The workers here are threads of this process, which start in an instant
# and keep the example quick. For real work use worker processes with one
# thread each (``processes=True``): a small network spends much of a fit in
# Python, so two fits in threads of one process mostly take turns.
if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        # A Bayesian search proposes ``n_points`` candidates per step; with
        # 2-fold CV, two candidates keep both workers busy.
        search = make_search(pipe, {"lr": Real(1e-3, 1e-1, log=True)}, "bayes",
                             n_iter=6, n_points=2, cv=2, n_jobs=-1, random_state=0)
        with joblib.parallel_config(backend="dask"), search_progress(search):
            search.fit(X, y)
        workers = sorted(client.scheduler_info()["workers"])
        print(f"{len(workers)} workers ran the fits")
        print(f"best lr {search.best_params_['nnclassifier__lr']:.4f}, "
              f"cv accuracy {search.best_score_:.3f}")
