"""
Saving without pickle, and exporting the student to ONNX
========================================================

:func:`sktd.save` writes weights (safetensors) and metadata (JSON) in one file
that :func:`sktd.load` reads without unpickling anything.
``export_onnx`` writes the student, its input scaling included, for
onnxruntime.
"""

# %%
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime

from sktd import TransferDistillClassifier, load, make_shifted_digits, save

data = make_shifted_digits(n_labelled=60, n_unlabelled=300, random_state=0)
model = TransferDistillClassifier(
    learning_rate_init=0.01, batch_size=64, max_iter=10, random_state=0
).fit(
    data["X_source"],
    data["y_source"],
    X_target=data["X_target"],
    y_target=data["y_target"],
)
folder = Path(tempfile.mkdtemp())

# %%
save(model, folder / "model.safetensors")
restored = load(folder / "model.safetensors")
same = np.array_equal(
    restored.predict_proba(data["X_test"]), model.predict_proba(data["X_test"])
)
print("loaded model predicts identically:", same)

# %%
model.export_onnx(folder / "student.onnx")
session = onnxruntime.InferenceSession(str(folder / "student.onnx"))
(probabilities,) = session.run(None, {"X": data["X_test"].astype(np.float32)})
gap = np.abs(probabilities - model.predict_proba(data["X_test"])).max()
print(f"largest gap between onnxruntime and predict_proba: {gap:.1e}")
