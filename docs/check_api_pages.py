"""Check that the built API pages document every public method.

Run after the HTML build (``.ci/run`` does)::

    python docs/check_api_pages.py docs/_build/html
"""

import sys
from pathlib import Path

EXPECTED = {
    "sktd.TransferDistillClassifier": [
        "fit",
        "predict",
        "predict_proba",
        "predict_log_proba",
        "predict_teacher",
        "predict_proba_teacher",
        "score",
        "distillation_report",
        "export_onnx",
    ],
    "sktd.TransferDistillRegressor": [
        "fit",
        "predict",
        "predict_teacher",
        "score",
        "distillation_report",
        "export_onnx",
    ],
    "sktd.model_selection.TargetKFold": ["split", "get_n_splits"],
    "sktd.model_selection.TargetShuffleSplit": ["split", "get_n_splits"],
}


def main(build):
    missing = []
    for page, methods in EXPECTED.items():
        html = (Path(build) / "generated" / f"{page}.html").read_text()
        missing += [f"{page}.{m}" for m in methods if f'id="{page}.{m}"' not in html]
    if missing:
        sys.exit("API pages lack: " + ", ".join(missing))
    print(f"API pages document {sum(map(len, EXPECTED.values()))} methods.")


if __name__ == "__main__":
    main(sys.argv[1])
