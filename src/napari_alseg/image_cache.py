"""A bounded cache of case images: least recently used first out, sized in bytes.

A cohort of BraTS-size cases (4 channels x 240x240x155 float32 = 143 MB each) does not fit
in memory all at once, so the session keeps only the most recently used images, up to a
byte budget, and reloads an evicted one from its files when asked again. The newest image
is always kept, even alone above the budget, so a single large case still works.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping

import numpy as np

DEFAULT_BUDGET_BYTES = 2 << 30  # 2 GiB
BUDGET_ENV = "ALSEG_IMAGE_CACHE_MB"


def default_budget() -> int:
    """``$ALSEG_IMAGE_CACHE_MB`` (MiB) when set, else 2 GiB or a quarter of total memory if less."""
    configured = os.environ.get(BUDGET_ENV, "").strip()
    if configured:
        try:
            return max(0, int(float(configured) * (1 << 20)))
        except ValueError:
            pass
    try:
        import psutil

        return min(DEFAULT_BUDGET_BYTES, int(psutil.virtual_memory().total) // 4)
    except (ImportError, OSError, RuntimeError):
        return DEFAULT_BUDGET_BYTES


class ImageCache:
    """Arrays by key, evicting the least recently used once their bytes exceed ``budget_bytes``.

    Thread-safe: the training and scoring threads read while the main thread shows a case.
    A loader runs outside the lock, so a slow read never blocks other keys.
    """

    def __init__(self, budget_bytes: int | None = None) -> None:
        self.budget_bytes = default_budget() if budget_bytes is None else int(budget_bytes)
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.loads = 0  # how many times a loader ran (misses)

    def get(self, key: Hashable, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array for ``key``, or ``load()``'s result, kept within the budget."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        array = load()
        with self._lock:
            self.loads += 1
            if key in self._items:  # another thread loaded it meanwhile
                self._items.move_to_end(key)
                return self._items[key]
            self._items[key] = array
            self._bytes += array.nbytes
            while self._bytes > self.budget_bytes and len(self._items) > 1:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes
        return array

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        with self._lock:
            return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


class LazyImages(Mapping):
    """A read-only ``case → (Cin, k, j, i)`` mapping that loads each image only when asked.

    What a cohort-wide pass (pool scoring) is handed instead of a dict of every image:
    with ``load`` going through an :class:`ImageCache`, it holds at most the cache's bytes
    plus the image in use. ``shapes`` (from the project's records) answer shape questions
    without reading a file; :func:`image_shapes` uses them.
    """

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], load: Callable[[str], np.ndarray]) -> None:
        self.shapes = {case: tuple(int(size) for size in shape) for case, shape in shapes.items()}
        self._load = load

    def __getitem__(self, case: str) -> np.ndarray:
        if case not in self.shapes:
            raise KeyError(case)
        return self._load(case)

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)


def image_shapes(images: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Each image's shape: from :attr:`LazyImages.shapes` without loading, else from the arrays."""
    if isinstance(images, LazyImages):
        return dict(images.shapes)
    return {case: tuple(np.shape(image)) for case, image in images.items()}
