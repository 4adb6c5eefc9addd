"""
A Pipeline with preprocessing, cross-validated on the target
============================================================

The stacked form puts source and target rows in one ``X`` so that every
Pipeline step (here a scaler) sees both domains, and
:class:`~sktd.model_selection.TargetKFold` tests on target rows only.
"""

# %%
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktd import TransferDistillClassifier, make_shifted_digits, stack_domains
from sktd.model_selection import TargetKFold

data = make_shifted_digits(n_labelled=60, n_unlabelled=100, random_state=0)
X, y, sample_domain = stack_domains(
    data["X_source"], data["y_source"], data["X_target"], data["y_target"]
)

model = make_pipeline(
    StandardScaler(),
    TransferDistillClassifier(
        teacher_hidden_layer_sizes=(64,),
        student_hidden_layer_sizes=(32,),
        max_iter=20,
        learning_rate_init=0.01,
        batch_size=64,
        random_state=0,
    ),
)

# %%
# Routing off: the splitter reads the domains from ``groups``; the estimator
# gets them as a fit parameter of its Pipeline step.
scores = cross_val_score(
    model,
    X,
    y,
    groups=sample_domain,
    cv=TargetKFold(n_splits=3),
    params={"transferdistillclassifier__sample_domain": sample_domain},
)
print("target accuracy per fold:", scores.round(3))
