"""sktd: transfer learning plus knowledge distillation as scikit-learn estimators."""

from ._datasets import make_shifted_digits
from ._domains import stack_domains
from ._estimators import TransferDistillClassifier, TransferDistillRegressor
from ._onnx import export_onnx
from ._persistence import load, save
from ._plotting import plot_agreement, plot_learning_curves
from ._strategies import Pretrained

__version__ = "0.7.0"

__all__ = [
    "Pretrained",
    "TransferDistillClassifier",
    "TransferDistillRegressor",
    "export_onnx",
    "load",
    "make_shifted_digits",
    "plot_agreement",
    "plot_learning_curves",
    "save",
    "stack_domains",
    "__version__",
]
