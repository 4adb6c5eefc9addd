"""
When the source does not help: the negative-transfer guard
===========================================================

Transfer assumes the source teaches something about the target. When it does
not (here, a source whose labels are pure noise), fine-tuning its network on a
few target rows still starts from a network that learnt nothing useful, and
the student pays for it. The guard weighs, out of fold on the labelled target
rows, five candidate teachers: the source network, the transferred one, the
source network fine-tuned on the target rows rehearsed among source rows, and
two models of the target rows alone (linear, and the teacher's architecture
trained from scratch). A source that does not help loses its weight. With a
helpful source, the same ``fit`` keeps it.
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

for name, (X_source, y_source) in sources.items():
    for guard in (True, False):
        model = TransferDistillClassifier(negative_transfer_guard=guard, random_state=0)
        model.fit(X_source, y_source, X_target=X_target, y_target=y_target)
        weights = {k: round(v, 1) for k, v in model.transfer_weights_.items()}
        print(
            f"{name}, guard={guard}: student accuracy {model.score(X_test, y_test):.3f}"
        )
        print(f"    teacher weights {weights}")

# %%
# The alternative a user would fit on the 60 labelled target rows alone:
labelled = y_target != -1
target_only = make_pipeline(StandardScaler(), LogisticRegression())
target_only.fit(X_target[labelled], y_target[labelled])
print(f"logistic regression, target rows only: {target_only.score(X_test, y_test):.3f}")

# %%
# With the noise source, the guard moves the teacher's weight to the models of
# the target rows and wins back what transfer lost: the student ends level with
# the target-only logistic regression (0.680 and 0.680 when this example was
# last run), where the unguarded student is 7 points below (0.613). What weight the
# noise network keeps is not trust: its outputs are nearly uniform, and a little
# of that tempers overconfident target-only models under the log loss (see
# ``transfer_losses_`` for the out-of-fold losses the guard compared). The
# guard bounds the damage of a bad source; it does not make a useless source
# useful.
