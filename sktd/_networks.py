"""Default torch modules for tabular rows."""

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "logistic": nn.Sigmoid,
    "gelu": nn.GELU,
}


class MLP(nn.Module):
    """A multi-layer perceptron split into a ``body`` and a linear ``head``.

    The split lets transfer strategies treat the feature extractor and the
    output layer differently (freeze the body, re-initialise the head).

    Parameters
    ----------
    n_features : int
        Width of the input rows.
    n_outputs : int
        Number of outputs: classes (logits) or regression targets.
    hidden_layer_sizes : tuple of int, default=(128, 64)
        Width of each hidden layer.
    activation : {"relu", "tanh", "logistic", "gelu"}, default="relu"
        Non-linearity after each hidden layer.
    dropout : float, default=0.0
        Dropout probability after each hidden activation.

    Examples
    --------
    >>> import torch
    >>> from sktd._networks import MLP
    >>> MLP(4, 3, hidden_layer_sizes=(8,))(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        n_features,
        n_outputs,
        hidden_layer_sizes=(128, 64),
        activation="relu",
        dropout=0.0,
    ):
        super().__init__()
        layers = []
        width = n_features
        for size in hidden_layer_sizes:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, X):
        """Return the raw outputs (logits for classification)."""
        return self.head(self.body(X))

    def features(self, X):
        """Return the last hidden layer's activations (the head's input)."""
        return self.body(X)


class HintedStudent(nn.Module):
    """A student that also outputs its hidden features mapped to the teacher's.

    The distillation stage trains this wrapper when a hint (feature-level) loss
    is asked for (FitNets, Romero et al., 2015): ``adapter``, a linear map
    from the student's last hidden layer to the teacher's, lets a narrow
    student be compared with a wide teacher. Only ``student`` is kept after
    training.

    Parameters
    ----------
    student : torch.nn.Module
        The student; its ``features(X)`` gives its last hidden layer.
    adapter : torch.nn.Linear
        Maps the student's features to the teacher's feature width.
    """

    def __init__(self, student, adapter):
        super().__init__()
        self.student = student
        self.adapter = adapter

    def forward(self, X):
        """Return the student's outputs followed by its adapted features."""
        features = self.student.features(X).flatten(1)
        return torch.cat([self.student(X), self.adapter(features)], dim=1)


def count_parameters(module):
    """Return the number of learnable scalars in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
