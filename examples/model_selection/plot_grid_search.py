"""
Grid search over teacher, student and distillation parameters
=============================================================

:class:`~sklearn.model_selection.GridSearchCV` with
:class:`~sktd.model_selection.TargetKFold` picks parameters by their score on
held-out *target* rows; every source row is in every training fold.
"""

# %%
from sklearn.model_selection import GridSearchCV

from sktd import TransferDistillClassifier, make_shifted_digits, stack_domains
from sktd.model_selection import TargetKFold

data = make_shifted_digits(n_labelled=60, n_unlabelled=100, random_state=0)
X, y, sample_domain = stack_domains(
    data["X_source"], data["y_source"], data["X_target"], data["y_target"]
)

grid = GridSearchCV(
    # The negative-transfer guard runs its own cross-validation inside every
    # fit; it is not what this search tunes, and is left out to keep it quick.
    TransferDistillClassifier(
        max_iter=20,
        learning_rate_init=0.01,
        batch_size=64,
        negative_transfer_guard=False,
        random_state=0,
    ),
    param_grid={
        "teacher_hidden_layer_sizes": [(64,)],
        "student_hidden_layer_sizes": [(16,), (32,)],
        "temperature": [2.0, 4.0],
    },
    cv=TargetKFold(n_splits=3),
)
grid.fit(X, y, groups=sample_domain, sample_domain=sample_domain)
print("best parameters:", grid.best_params_)
print("best target accuracy (CV):", round(grid.best_score_, 3))
print("held-out target accuracy:", grid.score(data["X_test"], data["y_test"]))
