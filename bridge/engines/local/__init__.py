"""The offline reader (`reader.url: local`, `plate-bridge serve`): plates read with the PP-OCR ONNX
models that ship inside the `rapidocr` wheel.

    models       loading the models; the recognizer cut down to a plate's characters
    detection    where the text is: text lines, plate-shaped edge regions, windows for a closer look
    recognition  what the text says: batched recognition and CTC decoding into characters
    cues         what a plate shows of its country: the EU band, Austria's stripes, a US state's name
    ranking      which reading is the plate: candidates, plate priors, region, overlaps, the answer
    engine       `LocalEngine`: the passes over a frame that use all of the above

Each module keeps the tuning constants of the code it holds (TUNING.md beside them says which where).
"""

try:
    import cv2  # noqa: F401
    import numpy  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    from onnx import numpy_helper  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extra
    raise ImportError(
        f"the local engine needs onnxruntime, onnx, OpenCV and the PP-OCR models ({exc.name} is missing):"
        " pip install 'plate-bridge[local]'"
    ) from exc

from bridge.engines.local.engine import LocalEngine

__all__ = ["LocalEngine"]
