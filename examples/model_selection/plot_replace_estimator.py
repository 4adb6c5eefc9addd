"""
Replacing an existing estimator in a Pipeline
=============================================

A Pipeline built around :class:`~sklearn.neural_network.MLPClassifier` takes a
:class:`~sktd.TransferDistillClassifier` in its place. Fitted on source rows
alone, ``fit(X, y)`` is plain teacher-to-student distillation; with the target
rows stacked in, the same Pipeline transfers to the target.
"""

# %%
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sktd import TransferDistillClassifier, make_shifted_digits, stack_domains

data = make_shifted_digits(n_labelled=60, n_unlabelled=300, random_state=0)
labelled = data["y_target"] != -1

existing = Pipeline(
    [
        ("scale", StandardScaler()),
        (
            "model",
            MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0),
        ),
    ]
)
existing.fit(data["X_target"][labelled], data["y_target"][labelled])
print(
    "MLPClassifier on the labelled target rows:",
    existing.score(data["X_test"], data["y_test"]),
)

# %%
# Swap the step, stack the domains, pass ``sample_domain`` to the step.
existing.set_params(
    model=TransferDistillClassifier(
        teacher_hidden_layer_sizes=(64,),
        student_hidden_layer_sizes=(32,),
        max_iter=20,
        learning_rate_init=0.01,
        batch_size=64,
        random_state=0,
    )
)
X, y, sample_domain = stack_domains(
    data["X_source"], data["y_source"], data["X_target"], data["y_target"]
)
existing.fit(X, y, model__sample_domain=sample_domain)
print(
    "sktd student in the same Pipeline:", existing.score(data["X_test"], data["y_test"])
)
