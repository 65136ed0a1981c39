"""Loading the PP-OCR ONNX models that ship inside the `rapidocr` wheel: the detector as it is, the
recognizer cut down to the characters a plate can show."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import numpy_helper

from bridge.engines.local.recognition import PLATE_SYMBOLS, Recognizer, alphanumeric_columns

log = logging.getLogger(__name__)

# The package whose wheel carries the models; it is only located on disk, never imported, so none of its
# start-up code (or its model downloader) runs.
MODEL_PACKAGE = "rapidocr"
DETECTION_MODEL = "PP-OCRv6_det_small.onnx"
RECOGNITION_MODEL = "PP-OCRv6_rec_small.onnx"


def load_models(
    model_dir: Path | None, *, threads: int | None, plate_characters_only: bool
) -> tuple[onnxruntime.InferenceSession, Recognizer]:
    """The detector's session and the recognizer, from `model_dir` (default: the packaged models)."""
    model_dir = model_dir or packaged_model_dir()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 4)
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    detector = onnxruntime.InferenceSession(str(model_dir / DETECTION_MODEL), options, providers=providers)
    model, labels = recognition_model(
        model_dir / RECOGNITION_MODEL, plate_characters_only=plate_characters_only
    )
    recognizer = onnxruntime.InferenceSession(model, options, providers=providers)
    return detector, Recognizer(recognizer, labels)


def packaged_model_dir() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the local engine needs the PP-OCR models of the {MODEL_PACKAGE!r} package:"
            " pip install 'plate-bridge[local]'"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "models"
    if not (model_dir / RECOGNITION_MODEL).is_file():
        raise ImportError(
            f"{model_dir} has no {RECOGNITION_MODEL}; install the pinned version:"
            " pip install 'plate-bridge[local]'"
        )
    return model_dir


def recognition_model(path: Path, *, plate_characters_only: bool) -> tuple[bytes, list[str]]:
    """The recognizer, cut down to the characters a plate can show, and its output labels.

    Plates use Latin letters, digits and a few separators; the model's thousands of other scripts'
    characters only steal probability from the letter or digit they resemble, and scoring them and
    holding their probabilities at every step costs memory (a fifth of the engine's peak) and time (a
    few percent of a frame). The classifier at the end (a MatMul and an Add over every character, then a
    Softmax) keeps the columns of the CTC blank, the alphanumerics in any case or width, and the
    separators: the softmax over those is what decoding renormalised to anyway, so the readings stay the
    same.
    """
    model = onnx.load(str(path))
    # PaddleOCR's labels: column 0 is the CTC blank, then the dictionary, then the space.
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    labels = ["", *metadata["character"].splitlines(), " "]
    if not plate_characters_only:
        return model.SerializeToString(), labels
    symbols = (column for column, label in enumerate(labels) if label in PLATE_SYMBOLS)
    kept = sorted({0, *np.concatenate(alphanumeric_columns(labels)).tolist(), *symbols})
    classifier = [tensor for tensor in model.graph.initializer if tensor.dims[-1:] == [len(labels)]]
    if len(classifier) != 2:  # the weights and the bias; anything else is a model this code does not know
        log.warning(
            "%s: no classifier over its %d characters to cut down; the recognizer runs whole",
            path.name,
            len(labels),
        )
        return model.SerializeToString(), labels
    for tensor in classifier:
        pruned = numpy_helper.to_array(tensor)[..., kept]
        tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(pruned), tensor.name))
    del model.graph.value_info[:]  # shapes inferred for the whole classifier; onnxruntime infers them again
    model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value = len(kept)
    return model.SerializeToString(), [labels[column] for column in kept]
