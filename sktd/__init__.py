"""sktd: transfer learning plus knowledge distillation as scikit-learn estimators."""

from ._domains import stack_domains
from ._estimators import TransferDistillClassifier, TransferDistillRegressor

__version__ = "0.1.0"

__all__ = [
    "TransferDistillClassifier",
    "TransferDistillRegressor",
    "stack_domains",
    "__version__",
]
