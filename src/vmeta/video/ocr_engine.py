"""The OCR engine on-screen text is read with: the `OcrEngine` protocol (tests pass a counting fake) and
rapidocr behind it, one per detection size per process, loaded only when OCR actually runs.

`rapidocr` and `onnxruntime` are the `[ocr]` extra; without them `RapidOcrEngine` raises a UserError that says
what to install.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from vmeta.errors import UserError

INSTALL_HINT = "pip install 'vmeta[ocr]'"


class OcrEngine(Protocol):
    """Text detection and recognition on BGR uint8 pictures; counts its calls (tests and the bench read them)."""

    detect_calls: int
    recognize_calls: int

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        """Quadrilaterals (4x2 float, image pixels) around text lines."""

    def crop(self, image: np.ndarray, quad: np.ndarray) -> np.ndarray:
        """The upright crop of one quadrilateral."""

    def recognize(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """(text, score) per crop."""


@contextmanager
def _no_spinning() -> Iterator[None]:
    """Sessions made inside do not let ONNX Runtime's idle workers spin: between two model calls (Python work
    on crops and thumbnails, the other model) spinning threads take the 2 cores from the thread that works —
    ~12% of a 15 s clip's OCR time measured (2.98 -> 2.63 s). rapidocr builds its SessionOptions in
    `OrtInferSession._init_sess_opts`; when that is gone (another rapidocr), sessions keep ORT's default."""
    try:
        from rapidocr.inference_engine.onnxruntime import main as ort_main

        cls = ort_main.OrtInferSession
        original = cls.__dict__["_init_sess_opts"]
    except (ImportError, AttributeError, KeyError):
        yield
        return

    def options(cfg: Any) -> Any:
        opts = original.__func__(cfg)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts

    cls._init_sess_opts = staticmethod(options)
    try:
        yield
    finally:
        cls._init_sess_opts = original


class RapidOcrEngine:
    """rapidocr (PP-OCR det + rec, ONNX models inside the wheel: nothing is downloaded)."""

    def __init__(self, det_side: int = 640):
        try:
            from rapidocr import RapidOCR
            from rapidocr.utils.process_img import get_rotate_crop_image
        except ImportError as exc:
            raise UserError(
                f"reading on-screen text needs rapidocr and onnxruntime, which are not installed ({exc}); "
                f"run: {INSTALL_HINT}"
            ) from None
        params = {
            "Global.log_level": "error",
            "Global.use_cls": False,  # captions are upright; the angle classifier only costs time
            "Det.limit_type": "max",
            "Det.limit_side_len": det_side,
        }
        with _no_spinning():
            self._ocr = RapidOCR(params=params)
            self._det = self._ocr._load_det_model()
            self._rec = self._ocr._load_rec_model()
        self._crop = get_rotate_crop_image
        self.detect_calls = 0
        self.recognize_calls = 0

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        self.detect_calls += 1
        out = self._det(image)
        return [] if out.boxes is None else [np.asarray(b, dtype=np.float32) for b in out.boxes]

    def crop(self, image: np.ndarray, quad: np.ndarray) -> np.ndarray:
        return self._crop(image, quad.copy())

    def recognize(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        if not crops:
            return []
        from rapidocr.ch_ppocr_rec import TextRecInput

        self.recognize_calls += 1
        out = self._rec(TextRecInput(img=list(crops), return_word_box=False))
        return [(str(t), float(s)) for t, s in zip(out.txts or (), out.scores or (), strict=False)]


_ENGINES: dict[int, RapidOcrEngine] = {}
_ENGINES_LOCK = threading.Lock()


def default_engine(det_side: int = 640) -> RapidOcrEngine:
    """One engine per detection size per process: loading the models takes about a second."""
    with _ENGINES_LOCK:
        if det_side not in _ENGINES:
            _ENGINES[det_side] = RapidOcrEngine(det_side)
        return _ENGINES[det_side]


__all__ = ["INSTALL_HINT", "OcrEngine", "RapidOcrEngine", "default_engine"]
