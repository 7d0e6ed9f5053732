"""
A convolutional network on digit images
=======================================

sklearn's digits are 8x8 grey images stored as rows of 64 numbers. The
:class:`~skopt_nn.CNN` spec reshapes each row to ``input_shape`` inside the
network, so it works straight after a scaler in a pipeline, and its
channels, kernel size and dense head are hyperparameters like any other.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import CNN, MLP, LRSchedule, NNClassifier
from skopt_nn.plotting import plot_learning_curve

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)

# %%
# Two convolutions (16 and 32 channels, 3x3 kernels, 2x2 max-pooling after
# each) and a dense layer of 64 units, against an MLP with one hidden layer
# of 192 units: about as many weights. Both train for 10 epochs with a
# one-cycle schedule.
common = dict(lr=0.005, max_epochs=10, batch_size=64, lr_schedule=LRSchedule("onecycle"),
              random_state=0)
cnn = make_pipeline(
    StandardScaler(),
    NNClassifier(CNN(input_shape=(1, 8, 8), channels=(16, 32), hidden=64), **common),
)
mlp = make_pipeline(StandardScaler(), NNClassifier(MLP((192,)), **common))

for name, model in [("CNN", cnn), ("MLP", mlp)]:
    model.fit(X_train, y_train)
    net = model[-1]
    print(f"{name}: {net.n_params_:>6,} parameters, test accuracy {model.score(X_test, y_test):.3f}")

print(cnn[-1].module_)

# %%
# Learning curves: the training loss per epoch, with the learning rate of
# the one-cycle schedule on the right-hand axis. (With ``early_stopping=True``
# the validation loss is drawn too.)
fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
plot_learning_curve(cnn, ax=axes[0]).set_title("CNN")
plot_learning_curve(mlp, ax=axes[1]).set_title("MLP")
plt.show()
