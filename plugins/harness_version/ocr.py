"""Reading a version drawn in an image: Tesseract OCR through pytesseract, with the French and
English language data of the distribution (``apt-get install tesseract-ocr tesseract-ocr-fra``).

Live only: the collector records what was recognised (text, per-word confidence, the version
found); checks judge the record, so replay needs no OCR engine.
"""
from __future__ import annotations

import io
import os
import re
import shutil
from functools import lru_cache

LANGS = "fra+eng"
TIMEOUT = 20  # seconds per image: an image is small, a hung engine is not waited for
MIN_CONFIDENCE = 60.0  # Tesseract's word confidence (0-100) a version must reach to count as read
SCALE = 3  # small UI text is enlarged before recognition (Tesseract reads best around 30 px letters)


@lru_cache(maxsize=1)
def engine() -> str | None:
    """``tesseract X.Y (fra+eng)`` when Tesseract, its binding and both languages are here, else
    None (also when ``HARNESS_OCR=none``: a verifier's choice, and the tests' way to show the
    path without OCR)."""
    if os.environ.get("HARNESS_OCR") == "none" or shutil.which("tesseract") is None:
        return None
    try:
        import pytesseract

        langs = set(pytesseract.get_languages(config=""))
        if not {"fra", "eng"} <= langs:
            return None
        return f"tesseract {pytesseract.get_tesseract_version()} ({LANGS})"
    except Exception:
        return None


def read(png: bytes, pattern: str) -> dict:
    """What Tesseract reads in ``png``: the text, each word with its confidence, and the first
    match of ``pattern`` (a version) with the lowest confidence of the words it spans."""
    import pytesseract
    from PIL import Image, ImageOps

    out: dict = {"engine": engine(), "text": "", "words": [], "version": None, "confidence": None, "error": None}
    try:
        with Image.open(io.BytesIO(png)) as img:
            gray = ImageOps.grayscale(img.convert("RGB"))
            if gray.resize((1, 1)).getpixel((0, 0)) < 128:  # light text on a dark ground: Tesseract wants dark on light
                gray = ImageOps.invert(gray)
            big = gray.resize((gray.width * SCALE, gray.height * SCALE))
            data = pytesseract.image_to_data(big, lang=LANGS, config="--psm 6", timeout=TIMEOUT, output_type=pytesseract.Output.DICT)
    except Exception as exc:  # RuntimeError on timeout, TesseractError, an image Pillow refuses
        out["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        return out
    words = [(w, float(c)) for w, c in zip(data["text"], data["conf"]) if w.strip() and float(c) >= 0]
    out["words"] = [{"text": w, "confidence": round(c, 1)} for w, c in words]
    out["text"] = " ".join(w for w, _ in words)
    m = re.search(pattern, out["text"], re.IGNORECASE)
    if m:
        # the words the match spans, by character offsets in the joined text
        spans, pos = [], 0
        for w, c in words:
            if pos < m.end() and pos + len(w) > m.start():
                spans.append(c)
            pos += len(w) + 1
        out["version"] = m.group(0)
        out["confidence"] = round(min(spans), 1) if spans else None
    return out
