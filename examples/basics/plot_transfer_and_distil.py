"""
Transfer, then distil: the one-line call
========================================

A big labelled source (clean digits), a small, partly labelled target (digits
shifted one pixel, dimmed and noisy): one ``fit`` pretrains a teacher on the
source, fine-tunes it on the 60 labelled target rows, and distils a student on
every row, the unlabelled target rows included.
"""

# %%
from sklearn.neural_network import MLPClassifier

from sktd import TransferDistillClassifier, make_shifted_digits

data = make_shifted_digits(n_labelled=60, n_unlabelled=300, random_state=0)
model = TransferDistillClassifier(
    learning_rate_init=0.01, batch_size=64, max_iter=20, random_state=0
)
model.fit(
    data["X_source"],
    data["y_source"],
    X_target=data["X_target"],
    y_target=data["y_target"],
)
report = model.distillation_report(data["X_test"], data["y_test"])
for name, row in report.items():
    print(f"{name:>8}: accuracy {row['score']:.3f}, {row['n_params']} parameters")

# %%
# What a user would do instead with the 60 labelled target rows:
labelled = data["y_target"] != -1
baseline = MLPClassifier(max_iter=1000, random_state=0)
baseline.fit(data["X_target"][labelled], data["y_target"][labelled])
score = baseline.score(data["X_test"], data["y_test"])
print(f"MLPClassifier on target rows only: {score:.3f}")
