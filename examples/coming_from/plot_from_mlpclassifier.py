"""
Coming from MLPClassifier
=========================

:class:`~sktd.TransferDistillClassifier` keeps
:class:`~sklearn.neural_network.MLPClassifier`'s manners: the same training
parameter names, ``fit`` / ``predict`` / ``predict_proba`` / ``score``,
``classes_``, ``n_iter_``. What differs:

================================  ============================================
MLPClassifier                     TransferDistillClassifier
================================  ============================================
``hidden_layer_sizes``            ``teacher_hidden_layer_sizes`` (128, 64) and
                                  ``student_hidden_layer_sizes`` (32, 16)
``alpha`` (L2 penalty)            ``weight_decay``; sktd's ``alpha`` weighs the
                                  teacher in the distillation loss
``learning_rate_init``,           same names and meaning, applied to each of
``max_iter``, ``batch_size``,     the three stages (pretrain, transfer,
``early_stopping``, ``tol``,      distil); ``max_iter`` is per stage
``validation_fraction``,
``n_iter_no_change``
``loss_curve_``                   ``history_["pretrain"|"transfer"|"distil"]``
``fit(X, y)``                     ``fit(X_source, y_source, X_target=...,
                                  y_target=...)``; ``fit(X, y)`` alone is
                                  plain distillation (``-1`` labels are
                                  unlabelled rows)
================================  ============================================
"""

# %%
# The same data for both: 900 source digits, and a target domain of digits
# shifted, dimmed and noisy, of which 50 are labelled.
import numpy as np
from sklearn.neural_network import MLPClassifier

from sktd import TransferDistillClassifier, make_shifted_digits

data = make_shifted_digits(n_labelled=50, n_unlabelled=300, random_state=0)
labelled = data["y_target"] != -1
X_pooled = np.vstack([data["X_source"], data["X_target"][labelled]])
y_pooled = np.r_[data["y_source"], data["y_target"][labelled]]

mlp = MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-4, max_iter=100, random_state=0)
mlp.fit(X_pooled, y_pooled)

# %%
# The MLP's parameters, renamed where the table says so. Fewer epochs keep
# the example fast.
sktd_model = TransferDistillClassifier(
    teacher_hidden_layer_sizes=(64,),
    student_hidden_layer_sizes=(32,),
    weight_decay=1e-4,
    max_iter=30,
    random_state=0,
)
sktd_model.fit(
    data["X_source"],
    data["y_source"],
    X_target=data["X_target"],
    y_target=data["y_target"],
)

for name, model in (("MLPClassifier, pooled rows", mlp), ("sktd student", sktd_model)):
    print(f"{name:28s} accuracy {model.score(data['X_test'], data['y_test']):.3f}")

# %%
# The fitted attributes a scikit-learn user reads are there.
print("classes_:", sktd_model.classes_)
print("n_iter_ (epochs of the distillation stage):", sktd_model.n_iter_)
print(
    "last training losses per stage:",
    {
        stage: round(float(history[-1, "train_loss"]), 4)
        for stage, history in sktd_model.history_.items()
        if history is not None
    },
)
