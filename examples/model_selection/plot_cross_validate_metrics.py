"""
Several metrics on the target: accuracy, macro recall, macro F1
===============================================================

:func:`~sklearn.model_selection.cross_validate` with several scorers, here with
metadata routing on: the estimator requests ``sample_domain`` for ``fit`` and
:class:`~sktd.model_selection.TargetKFold` reads it for its splits.
"""

# %%
import sklearn
from sklearn.model_selection import cross_validate

from sktd import TransferDistillClassifier, make_shifted_digits, stack_domains
from sktd.model_selection import TargetKFold

data = make_shifted_digits(n_labelled=60, n_unlabelled=100, random_state=0)
X, y, sample_domain = stack_domains(
    data["X_source"], data["y_source"], data["X_target"], data["y_target"]
)

with sklearn.config_context(enable_metadata_routing=True):
    model = TransferDistillClassifier(
        teacher_hidden_layer_sizes=(64,),
        student_hidden_layer_sizes=(32,),
        max_iter=20,
        learning_rate_init=0.01,
        batch_size=64,
        random_state=0,
    ).set_fit_request(sample_domain=True)
    results = cross_validate(
        model,
        X,
        y,
        cv=TargetKFold(n_splits=3),
        scoring=["accuracy", "recall_macro", "f1_macro"],
        params={"sample_domain": sample_domain},
    )

for metric in ("accuracy", "recall_macro", "f1_macro"):
    print(f"{metric:>13}: {results['test_' + metric].mean():.3f}")
