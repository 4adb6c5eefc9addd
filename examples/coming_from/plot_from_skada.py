"""
Coming from skada
=================

sktd speaks skada's convention: ``sample_domain`` positive on source rows and
negative on target rows, ``-1`` labels on unlabelled target rows, and
``sample_domain`` requested by ``fit``, ``predict`` and ``score`` by default.
skada's pipelines, splitters and scorers take an sktd estimator where they take
a skada one, with nothing else changed. Two scorers, ``DeepEmbeddedValidation``
and ``MaNoScorer``, read a skada deep estimator's ``module_`` when the
estimator is not a Pipeline; give them sktd inside ``make_da_pipeline`` (a bare
one says so in its error).
"""

# %%
import numpy as np
import sklearn
from sklearn.model_selection import cross_validate
from sklearn.preprocessing import StandardScaler

from sktd import TransferDistillClassifier

try:
    from skada import make_da_pipeline
    from skada.datasets import make_shifted_datasets
    from skada.metrics import PredictionEntropyScorer
    from skada.model_selection import SourceTargetShuffleSplit
except ImportError:  # skada comes with sktd's "test" and "bench" extras
    raise SystemExit("This example needs skada: pip install skada") from None

# skada turns scikit-learn's metadata routing on when it is imported.
sklearn.set_config(enable_metadata_routing=True)

X, y, sample_domain = make_shifted_datasets(
    n_samples_source=40,
    n_samples_target=30,
    shift="covariate_shift",
    noise=0.3,
    random_state=0,
)
# As skada's ``pack_train`` does, the target rows' labels are hidden (-1):
# sktd then learns from the source labels and the unlabelled target rows.
y_train = np.where(sample_domain < 0, -1, y)
print("domains:", np.unique(sample_domain), "(1 source, -2 target)")

# %%
# A skada pipeline with sktd as its estimator, cross-validated with skada's
# splitter and scored with skada's unsupervised scorer, which needs no target
# label.
pipe = make_da_pipeline(
    StandardScaler(),
    TransferDistillClassifier(
        teacher_hidden_layer_sizes=(32,),
        student_hidden_layer_sizes=(16,),
        max_iter=20,
        random_state=0,
    ),
)
scores = cross_validate(
    pipe,
    X,
    y_train,
    cv=SourceTargetShuffleSplit(n_splits=2, random_state=0),
    scoring=PredictionEntropyScorer(),
    params={"sample_domain": sample_domain},
)
print("prediction entropy scores:", scores["test_score"].round(3))

# %%
# The fitted pipeline predicts the target rows (``sample_domain`` is routed to
# ``predict`` too; sktd checks its length and predicts for the target task).
pipe.fit(X, y_train, sample_domain=sample_domain)
target = sample_domain < 0
accuracy = np.mean(pipe.predict(X[target]) == y[target])
print(f"accuracy on the (hidden) target labels: {accuracy:.3f}")
