"""skorch callbacks of the stages: progress, the finite-loss guard, unfreezing."""

import sys
import time

import numpy as np
from skorch.callbacks import Callback, PrintLog


def weighted_layers(module):
    """Return ``[(name, submodule), ...]`` of the leaf modules holding weights.

    They come in registration order, which for feed-forward networks is input
    to output; the last one is taken to be the head.
    """
    return [
        (name, sub)
        for name, sub in module.named_modules()
        if not list(sub.children()) and any(True for _ in sub.parameters(False))
    ]


class NonFiniteLossError(ArithmeticError):
    """Raised when a training loss becomes NaN or infinite."""


class FiniteLossGuard(Callback):
    """Stop a stage as soon as its epoch loss is not finite.

    A NaN loss leaves NaN weights behind; training on would return a model
    that predicts NaN. The estimator catches the error and retries the stage.
    """

    def on_epoch_end(self, net, **kwargs):
        """Check the epoch's training loss."""
        loss = net.history[-1].get("train_loss")
        if loss is not None and not np.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss became {loss} in epoch {len(net.history)}"
            )


class StageProgress(Callback):
    """One progress line per stage: epoch, losses, time.

    On a terminal the line is rewritten in place every epoch. Elsewhere (logs,
    notebooks' captured output, CI) a line is printed whenever ``every``
    seconds have passed since the last one, so a long stage is never silent,
    and the stage's final line always.

    Parameters
    ----------
    stage : str
        Name printed at the start of the line (``"pretrain"``, ...).
    enabled : bool, default=True
        ``False`` prints nothing.
    every : float, default=2.0
        Seconds between two lines when the output is not a terminal.
    """

    def __init__(self, stage, enabled=True, every=2.0):
        self.stage = stage
        self.enabled = enabled
        self.every = every

    def on_train_begin(self, net, **kwargs):
        """Start the stage's clock."""
        self.start_ = self.last_line_ = time.perf_counter()

    def on_epoch_end(self, net, **kwargs):
        """Rewrite the line on a terminal; elsewhere, print one every ``every`` s."""
        if not self.enabled:
            return
        if _stdout_is_terminal():
            print(self._line(net), end="\r", flush=True)
        elif time.perf_counter() - self.last_line_ >= self.every:
            self.last_line_ = time.perf_counter()
            print(self._line(net), flush=True)

    def on_train_end(self, net, **kwargs):
        """Print the stage's final line."""
        if self.enabled and len(net.history):
            print(self._line(net), flush=True)

    def _line(self, net):
        last = net.history[-1]
        parts = [f"[sktd] {self.stage:<8} epoch {last['epoch']:>4}/{net.max_epochs}"]
        for key in ("train_loss", "valid_loss"):
            if key in last:
                parts.append(f"{key} {last[key]:.4f}")
        parts.append(f"{time.perf_counter() - self.start_:.1f}s")
        return "  ".join(parts)


class GradualUnfreezing(Callback):
    """Train the head alone, then unfreeze one more layer every ``every`` epochs.

    Parameters
    ----------
    every : int
        Epochs between two unfreezings.
    """

    def __init__(self, every):
        self.every = every

    def on_epoch_begin(self, net, **kwargs):
        """Set ``requires_grad`` for this epoch's trainable layers."""
        layers = weighted_layers(net.module_)
        n_trainable = 1 + (len(net.history) - 1) // self.every
        for depth, (_, layer) in enumerate(reversed(layers)):
            for weight in layer.parameters():
                weight.requires_grad_(depth < n_trainable)

    def on_train_end(self, net, **kwargs):
        """Leave every weight trainable, as the other strategies do."""
        for weight in net.module_.parameters():
            weight.requires_grad_(True)


class StageLog(PrintLog):
    """skorch's per-epoch table, titled, in colour only on a terminal.

    Parameters
    ----------
    title : str
        Printed above the table, e.g. ``"transfer, guard fold 2/5: rehearsed"``.
    """

    def __init__(self, title="", **kwargs):
        super().__init__(**kwargs)
        self.title = title

    def on_train_begin(self, net, **kwargs):
        """Print the title before the table's header."""
        self.first_iteration_ = True
        if self.title:
            self._sink(f"[sktd] {self.title}", net.verbose)

    def format_row(self, row, key, color):
        """Format a cell; colour only when standard output is a terminal."""
        if not _stdout_is_terminal():
            # skorch colours a cell whose ``<key>_best`` flag is set.
            row = {name: value for name, value in row.items() if name != key + "_best"}
        return super().format_row(row, key, color)


def _stdout_is_terminal():
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
