"""What the text says: the PP-OCR recognizer over batches of line crops, and greedy CTC decoding into
characters, each with its probabilities over the 36 alphanumerics (`Character`)."""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field

import cv2
import numpy as np
import onnxruntime

ALPHANUMERICS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Reduced classes of the recognizer: 0 blank, 1..36 the alphanumerics, 37 anything else.
BLANK, OTHER = 0, len(ALPHANUMERICS) + 1
ZERO, LETTER_O = ALPHANUMERICS.index("0"), ALPHANUMERICS.index("O")
# Letters and digits plate fonts draw alike, both ways round, and the share of one's probability that
# counts for the other where a layout rules the one out.
LOOK_ALIKE_SHARE = 0.5
LOOK_ALIKES = tuple(
    pair
    for letter, digit in ("O0", "I1", "B8", "S5", "Z2", "G6")
    for pair in ((letter, digit), (digit, letter))
)
# Separators and marks read on plates and around them; they split nothing and are dropped from plates.
PLATE_SYMBOLS = frozenset(" -.:/|·•'\"")
RECOGNITION_HEIGHT = 48
RECOGNITION_MIN_WIDTH = 160
BATCH_WIDTH_SPREAD = 1.5  # a batch's widest crop at most this times its narrowest: padding is work too


@dataclass
class Character:
    """One character of a read line: the recognizer's probabilities over the 36 alphanumerics."""

    probabilities: np.ndarray
    _best: dict[tuple[str, float], tuple[str, float]] = field(default_factory=dict, repr=False)

    def best(self, allowed: str = ALPHANUMERICS, share: float = LOOK_ALIKE_SHARE) -> tuple[str, float]:
        """The likeliest of the `allowed` characters. Where a layout allows a letter but not its look-alike
        digit (or the other way round), part of the look-alike's probability counts for it: the position
        settles O/0, I/1, B/8, S/5, Z/2, G/6 (but a confident glyph still outweighs a layout's wish)."""
        key = (allowed, share)
        if key not in self._best:
            probabilities = self.probabilities
            if share and len(allowed) < len(ALPHANUMERICS):
                probabilities = probabilities.copy()
                for symbol, twin in LOOK_ALIKES:
                    if symbol in allowed and twin not in allowed:
                        probabilities[ALPHANUMERICS.index(symbol)] += (
                            share * self.probabilities[ALPHANUMERICS.index(twin)]
                        )
            index = max((ALPHANUMERICS.index(symbol) for symbol in allowed), key=probabilities.__getitem__)
            self._best[key] = (ALPHANUMERICS[index], float(probabilities[index]))
        return self._best[key]

    @property
    def presence(self) -> float:
        """How sure the recognizer is that a character (rather than nothing or a symbol) is here."""
        return float(self.probabilities.sum())

    def alternatives(self, count: int, *, zero_for_o: bool = False) -> list[tuple[str, float]]:
        """The likeliest characters when nothing says letter or digit. With `zero_for_o` an O counts as a
        0: plate fonts draw them alike and some numbering schemes avoid the letter O; layouts can still
        ask for the letter (`best`)."""
        probabilities = self.probabilities.copy()
        if zero_for_o:
            probabilities[ZERO] += probabilities[LETTER_O]
            probabilities[LETTER_O] = 0.0
        order = np.argsort(probabilities)[::-1][:count]
        return [(ALPHANUMERICS[i], float(probabilities[i])) for i in order]


class Recognizer:
    """The recognizer's session and what decoding needs of its output columns (its `labels`)."""

    def __init__(self, session: onnxruntime.InferenceSession, labels: list[str]) -> None:
        self.session = session
        self.labels = labels
        self.class_columns = alphanumeric_columns(labels)
        self.symbol_columns = np.array([label in PLATE_SYMBOLS for label in labels])

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[list[Character], str]]:
        """Read each crop as a line; crops of similar width share a batch, so little of it is padding."""
        widths = [max(8, math.ceil(RECOGNITION_HEIGHT * crop.shape[1] / crop.shape[0])) for crop in crops]
        order = sorted(range(len(crops)), key=widths.__getitem__)
        batches: list[list[int]] = []
        for index in order:
            if batches and widths[index] <= BATCH_WIDTH_SPREAD * max(
                RECOGNITION_MIN_WIDTH, widths[batches[-1][0]]
            ):
                batches[-1].append(index)
            else:
                batches.append([index])
        lines: list[tuple[list[Character], str]] = [([], "")] * len(crops)
        input_name = self.session.get_inputs()[0].name
        for members in batches:
            batch_width = max(RECOGNITION_MIN_WIDTH, *(widths[index] for index in members))
            batch = np.zeros((len(members), 3, RECOGNITION_HEIGHT, batch_width), np.float32)
            for row, index in enumerate(members):
                resized = cv2.resize(crops[index], (widths[index], RECOGNITION_HEIGHT)).astype(np.float32)
                batch[row, :, :, : widths[index]] = ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
            probabilities = self.session.run(None, {input_name: batch})[0]
            for row, index in enumerate(members):
                lines[index] = self.characters(probabilities[row])
        return lines

    def characters(self, probabilities: np.ndarray) -> tuple[list[Character], str]:
        """Greedy CTC decoding over blank, the alphanumerics (any case or width) and everything else.

        Returns the alphanumerics with their probabilities, and the whole text with symbols kept.
        """
        reduced = np.zeros((probabilities.shape[0], OTHER + 1), np.float32)
        reduced[:, BLANK] = probabilities[:, 0]
        for index, columns in enumerate(self.class_columns, start=1):
            reduced[:, index] = probabilities[:, columns].sum(axis=1)
        reduced[:, OTHER] = probabilities[:, self.symbol_columns].sum(axis=1)
        reduced /= np.maximum(reduced.sum(axis=1, keepdims=True), 1e-6)
        path = reduced.argmax(axis=1)
        characters = []
        text = []
        frame = 0
        while frame < len(path):
            symbol = path[frame]
            end = frame
            while end + 1 < len(path) and path[end + 1] == symbol:
                end += 1
            if symbol not in (BLANK, OTHER):
                peak = frame + int(reduced[frame : end + 1, symbol].argmax())
                characters.append(Character(reduced[peak, 1:OTHER].copy()))
                text.append(ALPHANUMERICS[symbol - 1])
            elif symbol == OTHER:
                peak = frame + int(reduced[frame : end + 1, OTHER].argmax())
                text.append(self.labels[int(np.where(self.symbol_columns, probabilities[peak], -1).argmax())])
            frame = end + 1
        return characters, "".join(text)


def alphanumeric_columns(labels: list[str]) -> list[np.ndarray]:
    """For each of the 36 alphanumerics, the output columns that spell it (upper, lower, full width)."""
    columns: dict[str, list[int]] = {symbol: [] for symbol in ALPHANUMERICS}
    for column, label in enumerate(labels):
        folded = unicodedata.normalize("NFKC", label).upper()
        if folded in columns:
            columns[folded].append(column)
    return [np.array(columns[symbol]) for symbol in ALPHANUMERICS]


def alphanumerics(characters: list[Character]) -> str:
    return "".join(character.best()[0] for character in characters)
