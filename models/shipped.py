"""The anomaly models shipped in this package, named in config by their bare name.

``model = "vibration"`` in an ``onnx`` detector means ``models/vibration.onnx`` as installed;
anything with a directory or an ``.onnx`` suffix is a path. Each shipped model has a card
beside it (``models/<name>.md``); ``tools/build_models.py`` rebuilds both.
"""

from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent
SHIPPED = ("vibration", "environment")


def model_path(model: str) -> Path:
    """The file ``model`` names: a shipped model's by its bare name, else the path itself."""
    if model in SHIPPED:
        return DIRECTORY / f"{model}.onnx"
    return Path(model)
