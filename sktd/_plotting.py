"""Figures of a fitted estimator: learning curves and teacher-student agreement.

matplotlib is an optional dependency (the ``plots`` extra), imported only when
a figure is drawn.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

STAGES = ("pretrain", "transfer", "distil")


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'sktd[plots]'."
        ) from error
    return plt


def plot_learning_curves(estimator, ax=None):
    """Plot the losses of all three stages, one after the other, on one axis.

    Parameters
    ----------
    estimator : TransferDistillClassifier or TransferDistillRegressor
        A fitted estimator.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when ``None``.

    Returns
    -------
    ax : matplotlib Axes
        The axis drawn on: one line per stage for the training loss (and a
        dashed one for the validation loss when early stopping held rows out).
    """
    check_is_fitted(estimator)
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    offset = 0
    for stage in STAGES:
        history = estimator.history_[stage]
        if history is None:
            continue
        epochs = offset + np.arange(1, len(history) + 1)
        line = ax.plot(epochs, history[:, "train_loss"], label=f"{stage} train loss")
        if "valid_loss" in history[-1]:
            ax.plot(
                epochs,
                history[:, "valid_loss"],
                linestyle="--",
                color=line[0].get_color(),
                label=f"{stage} validation loss",
            )
        ax.axvline(offset + 0.5, color="0.8", linewidth=0.8)
        offset += len(history)
    ax.set_xlabel("epoch (stages in order)")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title("sktd: pretrain, transfer, distil")
    ax.legend(fontsize="small")
    return ax


def plot_agreement(estimator, X, ax=None):
    """Plot how the student's predictions follow the teacher's on ``X``.

    Classifier: a matrix of teacher label (rows) against student label
    (columns), with the agreement rate in the title. Regressor: student against
    teacher predictions with the identity line.

    Parameters
    ----------
    estimator : TransferDistillClassifier or TransferDistillRegressor
        A fitted estimator.
    X : array-like of shape (n_samples, n_features)
        Rows to compare on, typically target rows.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when ``None``.

    Returns
    -------
    ax : matplotlib Axes
        The axis drawn on.
    """
    check_is_fitted(estimator)
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    teacher = estimator._outputs_to_predictions(*estimator._outputs(X, "teacher_"))
    student = estimator.predict(X)
    if hasattr(estimator, "classes_"):
        classes = estimator.classes_
        index = {c: i for i, c in enumerate(classes.tolist())}
        counts = np.zeros((len(classes), len(classes)), dtype=int)
        for t, s in zip(teacher.tolist(), student.tolist()):
            counts[index[t], index[s]] += 1
        ax.imshow(counts, cmap="Blues")
        ax.set_xticks(range(len(classes)), [str(c) for c in classes])
        ax.set_yticks(range(len(classes)), [str(c) for c in classes])
        ax.set_xlabel("student label")
        ax.set_ylabel("teacher label")
        ax.set_title(f"agreement {np.mean(teacher == student):.1%}")
    else:
        teacher, student = np.ravel(teacher), np.ravel(student)
        ax.scatter(teacher, student, s=8, alpha=0.6)
        low, high = min(teacher.min(), student.min()), max(teacher.max(), student.max())
        ax.plot([low, high], [low, high], color="0.5", linewidth=1)
        ax.set_xlabel("teacher prediction")
        ax.set_ylabel("student prediction")
        r2 = 1 - np.sum((student - teacher) ** 2) / np.sum(
            (teacher - teacher.mean()) ** 2
        )
        ax.set_title(f"student vs teacher, R² {r2:.3f}")
    return ax
