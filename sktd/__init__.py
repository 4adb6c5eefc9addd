"""sktd: transfer learning plus knowledge distillation as scikit-learn estimators."""

from ._datasets import make_shifted_digits
from ._domains import stack_domains
from ._estimators import TransferDistillClassifier, TransferDistillRegressor

__version__ = "0.1.0"

__all__ = [
    "TransferDistillClassifier",
    "TransferDistillRegressor",
    "make_shifted_digits",
    "stack_domains",
    "__version__",
]
