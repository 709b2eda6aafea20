"""Which labels of a data source are classes, and how many classes each has.

Sources emit a dict of labels per example. Some are classes a probe can predict (an int32
scalar: shape, direction, an image folder's `label`, a digit); some are bookkeeping (which file
or record an example came from) or regression targets (positions, velocities). Probes use this
module to tell them apart, and the class counts of the built-in sources so that a small probe
sample missing the last class still gets the right count.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jepa_jax.data import moving_mnist, synthetic

# Integer labels that identify an example rather than describe it.
INDEX_LABELS = ("file_index", "record_index")

# Class counts of the built-in sources' labels.
KNOWN_CLASSES: dict[str, int] = {**synthetic.LABEL_CLASSES, **moving_mnist.LABEL_CLASSES}
# Class counts of the built-in per-pixel labels (the dense probe's).
DENSE_CLASSES: dict[str, int] = dict(synthetic.DENSE_LABEL_CLASSES)


def class_labels(labels: Mapping[str, np.ndarray]) -> list[str]:
    """Names of the class labels among a stacked label dict {name: [N, ...]}: integer, one value
    per example, not an index. Built-in labels come first, in their canonical order."""
    found = [
        name
        for name, y in labels.items()
        if name not in INDEX_LABELS
        and np.ndim(y) == 1
        and np.issubdtype(np.asarray(y).dtype, np.integer)
    ]
    order = {name: i for i, name in enumerate(KNOWN_CLASSES)}
    return sorted(found, key=lambda n: (order.get(n, len(order)), n))


def num_classes(name: str, *splits: np.ndarray) -> int:
    """The class count of label `name`: the known count, else 1 + the largest value seen."""
    if name in KNOWN_CLASSES:
        return KNOWN_CLASSES[name]
    return int(max(int(np.max(y)) for y in splits)) + 1
