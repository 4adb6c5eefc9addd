"""scikit-learn's own estimator checks: the compatibility contract."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sktd import TransferDistillClassifier, TransferDistillRegressor

# Small networks and few epochs keep the checks fast; the checks that test
# learning (check_classifiers_train, check_regressors_train) still pass.
FAST = dict(
    teacher_hidden_layer_sizes=(32,),
    student_hidden_layer_sizes=(16,),
    learning_rate_init=0.01,
    max_iter=60,
    random_state=0,
)


@parametrize_with_checks(
    [TransferDistillClassifier(**FAST), TransferDistillRegressor(**FAST)]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
