"""
When the source does not help: the negative-transfer guard
===========================================================

Transfer assumes the source teaches something about the target. When it does
not (here, a source whose labels are pure noise), the guard notices on the
labelled target rows, out of fold, and gives the source network no weight: the
teacher falls back to a model of the target rows alone, and sktd does not end
up worse than a target-only model. With a helpful source, the same ``fit``
keeps the transferred network.
"""

# %%
import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktd import TransferDistillClassifier

X, y = make_classification(
    1600, n_features=10, n_informative=6, n_classes=3, random_state=1
)
X_target, y_target = X[:300], y[:300].copy()
y_target[60:] = -1  # 60 labelled target rows, 240 unlabelled
X_test, y_test = X[300:600], y[300:600]
rng = np.random.RandomState(0)
sources = {
    "helpful source (same task)": (X[600:], y[600:]),
    "useless source (noise labels)": (X[600:], rng.randint(0, 3, 1000)),
}

params = dict(learning_rate_init=0.01, batch_size=64, max_iter=30, random_state=0)
for name, (X_source, y_source) in sources.items():
    model = TransferDistillClassifier(**params)
    model.fit(X_source, y_source, X_target=X_target, y_target=y_target)
    weights = {k: round(v, 1) for k, v in model.transfer_weights_.items()}
    print(f"{name}: student accuracy {model.score(X_test, y_test):.3f}")
    print(f"    teacher = {model.transfer_choice_}, weights {weights}")

# %%
# The alternative a user would fit on the 60 labelled target rows alone:
labelled = y_target != -1
target_only = make_pipeline(StandardScaler(), LogisticRegression())
target_only.fit(X_target[labelled], y_target[labelled])
print(f"logistic regression, target rows only: {target_only.score(X_test, y_test):.3f}")
