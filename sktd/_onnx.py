"""ONNX export of the student, with the estimator's scalings folded in."""

import copy
import warnings

import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn


def export_onnx(estimator, path):
    """Write a fitted estimator's student, with its scalings, as ONNX.

    Needs the ``onnx`` extra. The graph takes float32 rows ``X`` of shape
    ``(n, n_features_in_)`` and
    returns ``probabilities`` (classifier, in the order of ``classes_``) or
    ``predictions`` (regressor, shape ``(n, n_outputs_)``).
    """
    check_is_fitted(estimator)
    graph = _ExportedStudent(estimator).eval()
    output = "probabilities" if hasattr(estimator, "classes_") else "predictions"
    example = torch.zeros(2, estimator.n_features_in_)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export's,
        # which needs onnxscript; for a plain MLP both give the same graph.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            input_names=["X"],
            output_names=[output],
            dynamic_axes={"X": {0: "n_rows"}, output: {0: "n_rows"}},
            dynamo=False,
        )


class _ExportedStudent(nn.Module):
    """The student between the estimator's own scalings, as one module."""

    def __init__(self, estimator):
        super().__init__()
        self.student = copy.deepcopy(estimator.student_.module_).cpu().float()
        scaler = estimator.input_scaler_
        # The scalings run in float64, as sktd's own: folded in float32, an
        # offset of 1e4 or more would cost the inputs their last digits.
        self.register_buffer("mean", torch.tensor(scaler.mean_, dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(scaler.scale_, dtype=torch.float64))
        self.is_classifier = hasattr(estimator, "classes_")
        if not self.is_classifier:
            target = estimator.target_scaler_
            self.register_buffer(
                "y_mean", torch.tensor(target.mean_, dtype=torch.float64)
            )
            self.register_buffer(
                "y_scale", torch.tensor(target.scale_, dtype=torch.float64)
            )

    def forward(self, X):
        """Return probabilities or predictions in the units of ``y``."""
        rows = ((X.double() - self.mean) / self.scale).float()
        outputs = self.student(rows)
        if self.is_classifier:
            return torch.softmax(outputs, dim=1)
        return (outputs.double() * self.y_scale + self.y_mean).float()
