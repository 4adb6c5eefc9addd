"""
Coming from skorch
==================

sktd builds skorch nets inside ``fit``; after fitting, ``teacher_`` and
``student_`` *are* skorch nets (they take standardised rows, as inside
``fit``). A module you defined for skorch can be the teacher, the student, or
both: pass the module and sktd builds the net around it.
"""

# %%
import numpy as np
from torch import nn

from sktd import TransferDistillClassifier, make_shifted_digits

data = make_shifted_digits(n_labelled=50, n_unlabelled=300, random_state=0)


class Student(nn.Module):
    """A skorch-style module: logits out, no softmax."""

    def __init__(self, n_features=64, n_classes=10):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_features, 32), nn.ReLU(), nn.Linear(32, n_classes)
        )

    def forward(self, X):
        return self.layers(X)


model = TransferDistillClassifier(
    teacher_hidden_layer_sizes=(64,), student=Student(), max_iter=30, random_state=0
)
model.fit(
    data["X_source"],
    data["y_source"],
    X_target=data["X_target"],
    y_target=data["y_target"],
)
print("student accuracy:", round(model.score(data["X_test"], data["y_test"]), 3))

# %%
# The fitted nets predict like skorch nets, on rows standardised as in
# ``fit`` (``model.input_scaler_``); the estimator's own ``predict_proba``
# does that step for you and gives the same numbers.
rows = model.input_scaler_.transform(data["X_test"][:5]).astype(np.float32)
print(type(model.student_).__name__, model.student_.predict_proba(rows).shape)
np.testing.assert_allclose(
    model.student_.predict_proba(rows),
    model.predict_proba(data["X_test"][:5]),
    rtol=1e-5,
)
print("teacher labels:", model.predict_teacher(data["X_test"][:5]))
print("student labels:", model.predict(data["X_test"][:5]))

# %%
# Each stage's skorch ``History``:
for stage, history in model.history_.items():
    if history is not None:
        print(stage, "epochs:", len(history))
