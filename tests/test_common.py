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


# Networks train in float32: weighted and repeated rows give the same model up
# to float32 rounding (5e-7 here), which the check compares at float64's 1e-7.
# tests/test_sample_weight.py checks the same equivalence at float32 tolerance.
FLOAT32_WEIGHTS = (
    "Integer weights match repeated rows up to float32 rounding (differences "
    "of 5e-7); the check's tolerance is float64's (rtol 1e-7). "
    "test_sample_weight.py asserts the equivalence at float32 tolerance."
)


def expected_failed_checks(estimator):
    expected = {
        "check_sample_weight_equivalence_on_dense_data": FLOAT32_WEIGHTS,
        "check_sample_weight_equivalence_on_sparse_data": FLOAT32_WEIGHTS,
    }
    if isinstance(estimator, TransferDistillClassifier):
        expected["check_classifiers_classes"] = (
            "Its last case labels the classes -1 and 1. Like scikit-learn's "
            "semi-supervised classifiers (which this check gives other labels "
            "by name), sktd reads -1 as an unlabelled row, so one class is "
            "left and fit refuses it, saying why."
        )
    return expected


@parametrize_with_checks(
    [TransferDistillClassifier(**FAST), TransferDistillRegressor(**FAST)],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
