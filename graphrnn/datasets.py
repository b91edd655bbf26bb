"""Small data sets that need no download: the adding problem, number pairs, and text."""
from __future__ import annotations

import numpy as np


def adding_problem(n: int, steps: int, rng: np.random.Generator | int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Le, Jaitly & Hinton 2015), as in the MinPy tutorial.

    x [n, steps, 2]: uniform values in [0, 1] and a mask that is 1 at two distinct random
    positions; y [n, 1]: the sum of the two marked values. Always answering 1 gives MSE 1/6.
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    values = rng.uniform(0.0, 1.0, (n, steps))
    marks = np.argsort(rng.random((n, steps)), axis=1)[:, :2]
    mask = np.zeros((n, steps))
    np.put_along_axis(mask, marks, 1.0, axis=1)
    x = np.stack([values, mask], axis=-1).astype(np.float32)
    return x, (values * mask).sum(axis=1, keepdims=True).astype(np.float32)


def number_pairs(n: int, rng: np.random.Generator | int = 0) -> tuple[np.ndarray, np.ndarray]:
    """tiny-dnn's two-number addition: x [n, 2, 1] two numbers in [-1, 1] read one per step,
    y [n, 1] their sum."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    x = rng.uniform(-1.0, 1.0, (n, 2, 1)).astype(np.float32)
    return x, x.sum(axis=1).astype(np.float32)


def pydoc_text() -> str:
    """About 465k characters of English and code: the topics of Python's own help system."""
    from pydoc_data.topics import topics
    return "\n\n".join(topics[k] for k in sorted(topics))
