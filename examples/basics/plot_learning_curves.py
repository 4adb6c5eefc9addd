"""
Learning curves of the three stages, and teacher-student agreement
==================================================================

:func:`sktd.plot_learning_curves` draws the losses of pretraining, transfer and
distillation one after the other; :func:`sktd.plot_agreement` shows how often
the student predicts what its teacher predicts on target rows.
"""

# %%
import matplotlib.pyplot as plt

from sktd import (
    TransferDistillClassifier,
    make_shifted_digits,
    plot_agreement,
    plot_learning_curves,
)

data = make_shifted_digits(n_labelled=60, n_unlabelled=300, random_state=0)
model = TransferDistillClassifier(
    learning_rate_init=0.01, batch_size=64, max_iter=20, random_state=0
).fit(
    data["X_source"],
    data["y_source"],
    X_target=data["X_target"],
    y_target=data["y_target"],
)

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
plot_learning_curves(model, ax=left)
plot_agreement(model, data["X_test"], ax=right)
fig.tight_layout()
print({stage: None if h is None else len(h) for stage, h in model.history_.items()})
