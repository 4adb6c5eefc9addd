"""Descriptions shared by the classifier's and the regressor's docstrings.

Each public estimator shows its full parameter and attribute lists, as
scikit-learn's MLPs do; the descriptions that read the same for both live
here once, and :func:`fill_docstring` puts them in place of the ``{{name}}``
lines of a class docstring.
"""

SHARED = {
    "negative_transfer_guard": """\
    negative_transfer_guard : bool, default=True
        With at least 10 labelled target rows, weigh five candidate teachers
        (the source network, the transferred one, the source network
        fine-tuned on the target rows rehearsed among source rows, and on the
        target rows alone a linear model (logistic or ridge regression) and a
        bag of the teacher's architecture trained from scratch on the folds)
        by their out-of-fold
        loss on the labelled target rows (5 folds), and teach with the best
        blend, averaged over bootstrap resamples of those rows, so that a
        source that does not help the target gets no weight. ``False``: the
        transferred network is the teacher.
""",
    "alpha": """\
    alpha : float, default=0.9
        Weight of the teacher term in the distillation loss; ``1 - alpha``
        weighs the hard labels. Unlabelled rows use the teacher term only.
""",
    "batch_size": """\
    batch_size : int or "auto", default="auto"
        Rows per batch; ``"auto"`` is ``min(200, n_rows)`` as in
        :class:`~sklearn.neural_network.MLPClassifier`, except that the
        student's batches grow past 200 rows on a transfer set of more than
        20,000 rows, to keep its epochs at 100 steps.
""",
    "consistent_teaching": """\
    consistent_teaching : {None, "noise", "mixup"}, default=None
        Perturb each distillation batch and query the teacher on the very
        rows the student sees (Beyer et al., 2022): Gaussian noise of
        ``noise_scale`` on standardised rows, or mixup of row pairs (mixed rows
        keep only the teacher's targets).
""",
    "device": """\
    device : str or torch.device, default="cpu"
        Where every stage trains and predicts, e.g. ``"cuda"``.
""",
    "early_stopping": """\
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of each stage's rows and stop when the
        validation loss has not improved by ``tol`` for ``n_iter_no_change``
        epochs, restoring the best weights. When ``False``, the training loss
        is monitored the same way.
""",
    "feature_names_in_": """\
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during ``fit``, when ``X`` has string column
        names.
""",
    "hint_weight": """\
    hint_weight : float, default=0.0
        Weight of a feature-level (hint) term in the distillation loss
        (FitNets, Romero et al., 2015): the student's last hidden layer,
        through a learned linear map, regresses the teacher's (each unit
        standardised; a blend's members side by side, weighted). 0 turns it
        off. Needs a student with a ``features(X)`` method (the default MLP
        has one) and no ``consistent_teaching``; a teacher without hidden
        layers (a linear model alone) gets a warning and no hint.
""",
    "history_": """\
    history_ : dict
        skorch ``History`` of each stage, keyed ``"pretrain"``, ``"transfer"``
        and ``"distil"``; ``None`` for a stage that did not run (transfer
        without labelled target rows).
""",
    "l2sp_strength": """\
    l2sp_strength : float, default=0.01
        Coefficient of the L2-SP penalty ``0.5 * ||w - w_source||^2``.
""",
    "learning_rate_init": """\
    learning_rate_init : float, default=1e-3
        Adam learning rate of every stage.
""",
    "max_iter": """\
    max_iter : int, default=200
        Maximum number of epochs of each stage (the student's: see
        ``student_max_iter``).
""",
    "student_max_iter": """\
    student_max_iter : int or None, default=None
        Maximum number of epochs of the distillation stage; ``None``:
        ``max_iter``. A classifier's student often needs fewer (100 epochs
        halve the distillation), but not always (see the benchmarks). A skorch
        ``student`` trains its own ``max_epochs``.
""",
    "n_features_in_": """\
    n_features_in_ : int
        Number of features seen during ``fit``.
""",
    "n_iter_": """\
    n_iter_ : int
        Epochs run by the distillation stage.
""",
    "n_iter_no_change": """\
    n_iter_no_change : int, default=10
        Epochs without improvement before a stage stops.
""",
    "noise_scale": """\
    noise_scale : float, default=0.1
        Standard deviation of the ``"noise"`` perturbation.
""",
    "random_state": """\
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling and validation splits. The same
        integer gives bit-identical predictions on the CPU.
""",
    "student": """\
    student : None, torch.nn.Module or skorch.NeuralNet, default=None
        Student network, as ``teacher``; ``None`` builds an MLP with
        ``student_hidden_layer_sizes``.
""",
    "student_hidden_layer_sizes": """\
    student_hidden_layer_sizes : tuple of int, default=(32, 16)
        Hidden widths of the default student.
""",
    "teacher_hidden_layer_sizes": """\
    teacher_hidden_layer_sizes : tuple of int, default=(128, 64)
        Hidden widths of the default teacher.
""",
    "teacher_pool": """\
    teacher_pool : {"networks", "tabular"}, default="tabular"
        The guard's candidates. ``"tabular"``: the five above and the
        scikit-learn models a tabular user would fit (HistGradientBoosting on
        the target rows or pooled with up to 5,000 source rows; pooled linear
        models, plain, on Daumé III's augmented features, and with source rows
        importance-weighted by a domain classifier), weighed by bagged
        ensemble selection shrunk halfway toward the best single candidate,
        itself chosen on each bootstrap resample so that near-ties share
        that half (gradient boosting fits a model per target, so regression
        with more than 4 targets leaves it out). ``"networks"``: the five
        networks only (the default in sktd 0.1).
        A model file (:func:`sktd.save`) holds the student, which predicts,
        but not a teacher that holds scikit-learn models.
""",
    "tol": """\
    tol : float, default=1e-4
        Minimum improvement of the monitored loss.
""",
    "torch_threads": """\
    torch_threads : int or "auto", default="auto"
        torch's intra-op threads while ``fit`` and ``predict`` run; the
        caller's setting is restored afterwards. ``"auto"`` is one thread:
        networks this small gain nothing from more, and torch's spinning
        threads slow a fit by up to 100x when another process holds a core.
        An integer is capped by ``OMP_NUM_THREADS`` when that is set.
""",
    "transfer_choice_": """\
    transfer_choice_ : str
        The candidate with all the weight, or ``"blend"``.
""",
    "transfer_set": """\
    transfer_set : {"given", "munge"}, default="munge"
        The rows the student learns the teacher on. ``"munge"``: every source
        and target row and 4 synthetic rows per target row (at least 2,000
        when every target row is labelled, at most 100,000), drawn around the
        target rows by MUNGE (Bucila et al., 2006), so that the student sees
        the teacher where it will be used even with few target rows.
        ``"given"``: the given rows only (the default in sktd 0.1).
""",
    "transfer_strategy": """\
    transfer_strategy : {"finetune", "gradual", "l2sp", "discriminative"}, \
            default="l2sp"
        How the teacher moves to the labelled target rows: train every weight;
        train the head alone, then unfreeze one layer more every
        ``n_iter_no_change // 2`` epochs; pull weights towards their source
        values (L2-SP) instead of weight decay; or halve the learning rate per
        layer below the head.
""",
    "validation_fraction": """\
    validation_fraction : float, default=0.1
        Share of rows held out when ``early_stopping`` is on.
""",
    "verbose": """\
    verbose : int, default=0
        ``0`` is silent; ``1`` shows one progress line per stage (pretrain,
        transfer, distil) with the epoch, the losses and the time; ``2`` adds
        skorch's per-epoch table.
""",
    "weight_decay": """\
    weight_decay : float, default=0.0
        L2 penalty passed to Adam.
""",
}


# The parameters of every stage's training, in the order both classes list them.
SHARED["training"] = "".join(
    SHARED[name]
    for name in (
        "learning_rate_init",
        "batch_size",
        "max_iter",
        "student_max_iter",
        "weight_decay",
        "early_stopping",
        "validation_fraction",
        "n_iter_no_change",
        "tol",
        "random_state",
        "verbose",
        "device",
        "torch_threads",
    )
)


def fill_docstring(cls):
    """Replace each ``{{name}}`` line of ``cls``'s docstring by its shared text."""
    doc = cls.__doc__
    for name, text in SHARED.items():
        doc = doc.replace("    {{" + name + "}}\n", text)
    if "{{" in doc:
        raise RuntimeError(f"{cls.__name__}'s docstring names an unknown text.")
    cls.__doc__ = doc
    return cls
