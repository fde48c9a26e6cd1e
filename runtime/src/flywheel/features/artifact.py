"""The files of a model version, and the module a model server builds from them.

A model version (a registry version, runtime/README.md, or any artifact a model server
serves) is a directory under any URI `flywheel.storage` resolves:

    model.pt2           a `torch.export` program: float32 [rows, width] -> [rows] or [rows, k]
    model.pt            or a TorchScript module with the same signature
    preprocessing.json  optional: the transform training fitted (a registry version has it);
                        named feature columns go through it to make the model's input
    signature.json      optional: {"features": ["plan", "tenure", ...]}, the raw columns,
                        with the label and the task training wrote
    calibration.json    optional: a calibrator (platt or temperature) applied to the
                        model's probability, so the scores returned are calibrated ones
    metadata.json       optional, without the two above: {"features": [...]}, the order
                        in which numeric columns are stacked
    quantization.json   optional: {"serve": "model.int8.pt"}, a quantized TorchScript copy
                        (spec.quantization) served instead of the float model

Training writes these files; the model server (`flywheel.serving.predictor`) and the
notWorseThanDeployed gate (`flywheel.training.runner`) read them here, so both run the
same module with the same transform and calibration. torch is imported only when a
module is loaded, and storage only when a file is read.
"""

from __future__ import annotations

import dataclasses
import io
import posixpath
import warnings
from typing import TYPE_CHECKING, Any

from flywheel.features.calibration import Calibrator
from flywheel.features.preprocess import Preprocessor

if TYPE_CHECKING:
    from flywheel.storage.uris import Location

EXPORTED_FILE = "model.pt2"
SCRIPT_FILE = "model.pt"
PREPROCESSING_FILE = "preprocessing.json"
SIGNATURE_FILE = "signature.json"
CALIBRATION_FILE = "calibration.json"
METADATA_FILE = "metadata.json"
QUANTIZATION_FILE = "quantization.json"
# torch warns that quantized tensor types will go; this torch still runs them.
QUANTIZED_TENSORS_DEPRECATED = r"torch\.quantize_per_tensor.*deprecated"


@dataclasses.dataclass(frozen=True)
class Served:
    """What a model server runs for one version."""

    module: Any  # a torch module: float32 [rows, width] -> scores
    feature_names: list[str] | None  # the raw columns, when the version names them
    preprocessor: Preprocessor | None
    calibrator: Calibrator | None


def load(where: Location) -> Served:
    """Everything a model server needs of the version under `where`."""
    module = load_module(where)
    pre = preprocessor(where)
    described = read_json(where, SIGNATURE_FILE) or read_json(where, METADATA_FILE) or {}
    return Served(module, feature_names(described, pre), pre, calibrator(where))


def feature_names(described: dict[str, Any], pre: Preprocessor | None) -> list[str] | None:
    """The raw columns the model takes: those signature.json (or metadata.json) lists,
    else the preprocessor's inputs.

    >>> feature_names({"features": ["plan", "risk"]}, None)
    ['plan', 'risk']
    >>> feature_names({}, None) is None
    True
    """
    names: list[str] | None = described.get("features")
    if names is None and pre is not None:
        names = [c.name for c in pre.columns]
    return names


def served_file(where: Location) -> Location:
    """The model file a model server runs: the quantized copy quantization.json names,
    else the exported program, else the TorchScript module older artifacts have."""
    quantized = (read_json(where, QUANTIZATION_FILE) or {}).get("serve")
    if quantized:
        found = where.join(quantized)
        if not _is_file(found):
            raise FileNotFoundError(
                f"{QUANTIZATION_FILE} names {quantized!r} to serve, and there is no "
                f"{found.uri}: publish the quantized copy with it, or remove {QUANTIZATION_FILE}"
            )
        return found
    for name in (EXPORTED_FILE, SCRIPT_FILE):
        found = where.join(name)
        if _is_file(found):
            return found
    raise FileNotFoundError(
        f"no model under {where.uri}: a version holds {EXPORTED_FILE} (torch.export) "
        f"or {SCRIPT_FILE} (TorchScript)"
    )


def load_module(where: Location) -> Any:
    """The torch module a model server runs for the version under `where`, on CPU."""
    found = served_file(where)
    with found.filesystem.open_input_stream(found.path) as f:
        data = f.read()
    # model.pt2 is a torch.export program; every other served file is TorchScript.
    if posixpath.basename(found.path) == EXPORTED_FILE:
        return load_exported(data)
    return load_script(data)


def load_exported(data: bytes) -> Any:
    """A `torch.export` program's bytes as a callable module."""
    import torch

    return torch.export.load(io.BytesIO(data)).module()


def load_script(data: bytes) -> Any:
    """TorchScript bytes (a float or a quantized module) as a module in eval mode, on CPU."""
    import torch

    with warnings.catch_warnings():
        # torch 2.15 deprecates TorchScript and quantized tensor types but still runs them.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", QUANTIZED_TENSORS_DEPRECATED, UserWarning)
        return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()  # type: ignore[no-untyped-call]


def signature(where: Location) -> dict[str, Any]:
    """signature.json (raw features, label, task), empty when the version has none."""
    found: dict[str, Any] = read_json(where, SIGNATURE_FILE) or {}
    return found


def preprocessor(where: Location) -> Preprocessor | None:
    state = read_json(where, PREPROCESSING_FILE)
    return Preprocessor.from_json(state) if state is not None else None


def calibrator(where: Location) -> Calibrator | None:
    state = read_json(where, CALIBRATION_FILE)
    return Calibrator.from_json(state) if state is not None else None


def read_json(where: Location, name: str) -> Any | None:
    """The JSON file `name` of the version under `where`, or None when it has none."""
    from flywheel.storage import publish

    return publish.read_json(where.join(name))


def _is_file(found: Location) -> bool:
    from pyarrow import fs as pafs

    return bool(found.filesystem.get_file_info(found.path).type == pafs.FileType.File)
