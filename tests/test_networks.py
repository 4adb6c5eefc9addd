"""torch modules: the MLP and the wrappers around teachers (``sktd._networks``)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from torch import nn

from sktd._callbacks import weighted_layers
from sktd._networks import (
    MLP,
    BlendedTeacher,
    TeacherFeatures,
    Tempered,
    bag,
    has_features,
    linear_module,
    stack_networks,
    stackable,
    tempered,
    unstack_networks,
)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_linear_module_reproduces_logistic_regression(n_classes):
    X, y = make_classification(100, n_features=5, n_classes=n_classes, n_informative=3)
    model = LogisticRegression().fit(X, y)
    layer = linear_module(model, 5, classes=np.arange(n_classes + 1))
    with torch.no_grad():
        proba = torch.softmax(layer(torch.tensor(X, dtype=torch.float32)), 1).numpy()
    # The class the model never saw has (almost) no probability.
    assert proba[:, -1].max() < 1e-6
    np.testing.assert_allclose(proba[:, :-1], model.predict_proba(X), atol=1e-5)


def test_blended_teacher_blends_probabilities():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 4), nn.Linear(3, 4)
    X = torch.randn(10, 3)
    blend = BlendedTeacher({"a": a, "b": b}, {"a": 0.25, "b": 0.75}, True)
    expected = 0.25 * torch.softmax(a(X), 1) + 0.75 * torch.softmax(b(X), 1)
    torch.testing.assert_close(torch.softmax(blend(X), 1), expected)
    regression = BlendedTeacher({"a": a, "b": b}, {"a": 0.25, "b": 0.75}, False)
    torch.testing.assert_close(regression(X), 0.25 * a(X) + 0.75 * b(X))


def test_teacher_features_of_a_blend_weigh_each_network_member():
    torch.manual_seed(0)
    first, second = MLP(4, 3, (5,)), MLP(4, 3, (6,))
    linear = nn.Linear(4, 3)
    blend = BlendedTeacher(
        {"a": first, "b": second, "c": linear},
        {"a": 0.25, "b": 0.5, "c": 0.25},
        classification=True,
    )
    rows = torch.randn(7, 4)
    with torch.no_grad():
        features = TeacherFeatures(blend)(rows)
        # Members side by side in name order, scaled by sqrt(weight); the
        # linear member has no hidden layer and is left out.
        expected = torch.cat(
            [0.5 * first.features(rows), 0.5**0.5 * second.features(rows)], dim=1
        )
    torch.testing.assert_close(features, expected)
    assert has_features(blend) and has_features(first)
    assert not has_features(linear)
    assert not has_features(
        BlendedTeacher({"c": linear}, {"c": 1.0}, classification=True)
    )


def test_bag_averages_its_networks_with_equal_weights():
    torch.manual_seed(0)
    networks = [nn.Linear(3, 2) for _ in range(4)]
    X = torch.randn(5, 3)
    with torch.no_grad():
        expected = sum(network(X) for network in networks) / 4
        torch.testing.assert_close(bag(networks, classification=False)(X), expected)


def test_a_stack_computes_each_network_on_its_own_rows():
    networks = []
    for seed in range(3):
        torch.manual_seed(seed)
        networks.append(MLP(5, 2, (7, 4)))
    stack = stack_networks(networks)
    X = torch.randn(11, 3, 5)
    with torch.no_grad():
        stacked = stack(X)
        for i, network in enumerate(networks):
            torch.testing.assert_close(stacked[:, i], network(X[:, i]))
    # Per-layer settings find the same layers under the same names.
    assert [name for name, _ in weighted_layers(stack)] == ["body.0", "body.2", "head"]
    # Unstacked, each network is a copy of the template with its own weights.
    template = MLP(5, 2, (7, 4))
    for network, unstacked in zip(networks, unstack_networks(stack, template)):
        assert unstacked is not template and not unstacked.training
        for (name, value), (_, expected) in zip(
            unstacked.named_parameters(), network.named_parameters()
        ):
            assert torch.equal(value, expected), name


def test_only_networks_known_to_map_rows_alone_are_stacked():
    class Own(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 2)

        def forward(self, X):
            return self.layer(X).cumsum(dim=0)

    assert stackable(MLP(3, 2, (4,), activation="tanh", dropout=0.2))
    assert stackable(nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2)))
    assert not stackable(Own())
    assert not stackable(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))
    assert not stackable(nn.Linear(3, 2, bias=False))
    with pytest.raises(TypeError, match="Own cannot be stacked"):
        stack_networks([Own(), Own()])


def _logits(module, X):
    with torch.no_grad():
        return module(X)


def test_a_tempered_network_is_a_rescaled_copy_with_the_same_parameters():
    torch.manual_seed(0)
    network = MLP(4, 3, (5,))
    X = torch.randn(6, 4)
    before = _logits(network, X)
    hotter = tempered(network, 2.5)
    torch.testing.assert_close(_logits(hotter, X), before / 2.5)
    # A copy of the same structure (model files name its tensors as any
    # network's); the candidate itself is untouched.
    assert type(hotter) is MLP and hotter is not network
    assert list(hotter.state_dict()) == list(network.state_dict())
    torch.testing.assert_close(_logits(network, X), before)
    assert tempered(network, 1.0) is network


def test_tempering_keeps_a_linear_models_unseen_class_impossible():
    X, y = make_classification(80, n_features=4, n_informative=2, random_state=0)
    layer = linear_module(LogisticRegression().fit(X, y), 4, classes=np.arange(3))
    rows = torch.tensor(X, dtype=torch.float32)
    before, after = _logits(layer, rows), _logits(tempered(layer, 4.0), rows)
    torch.testing.assert_close(after[:, :2], before[:, :2] / 4.0)
    torch.testing.assert_close(after[:, 2], before[:, 2])
    assert torch.softmax(after, 1)[:, 2].max() < 1e-6


def test_a_tempered_bag_tempers_each_member_and_keeps_their_weights():
    torch.manual_seed(0)
    networks = [MLP(3, 2, (4,)) for _ in range(3)]
    X = torch.randn(5, 3)
    expected = bag([tempered(n, 0.5) for n in networks], classification=True)
    result = tempered(bag(networks, classification=True), 0.5)
    assert isinstance(result, BlendedTeacher)
    torch.testing.assert_close(_logits(result, X), _logits(expected, X))


def test_a_module_it_cannot_rescale_is_wrapped_and_keeps_unseen_logits():
    class Custom(nn.Module):
        def forward(self, X):
            return torch.stack([X[:, 0], torch.full_like(X[:, 0], -30.0)], 1)

        def features(self, X):
            return X

    X = torch.randn(4, 2)
    wrapped = tempered(Custom(), 3.0)
    assert isinstance(wrapped, Tempered)
    torch.testing.assert_close(_logits(wrapped, X)[:, 0], X[:, 0] / 3.0)
    torch.testing.assert_close(_logits(wrapped, X)[:, 1], torch.full((4,), -30.0))
    # The hint loss still reads the wrapped network's hidden layer.
    assert has_features(wrapped)
    torch.testing.assert_close(TeacherFeatures(wrapped)(X), X)
