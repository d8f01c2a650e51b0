"""Reusing an image's vector when its product is re-published with the image it already had.

Catalogs re-publish products far more often than they change their images (prices,
stock, names). :class:`ImageReuse` remembers, per product image (product id and image id),
the content digest of the image last embedded for it and what was made of it (the vector,
and the thumbnail an inline image is shown by); an image with that digest gets the same
vector back without being decoded or run through the model, so a new version that adds one
image to a product runs the model once. For a URL that answered with an ETag or
Last-Modified, the next fetch of the same URL is conditional, and a 304 Not Modified
reuses the vector without the bytes being sent at all.

Guarantees:

* **A cache entry never changes a result.** An entry is used only for the product image
  it was made for and only when the image's bytes have its digest (BLAKE2b, 256 bits), or when
  the server that sent those bytes says, for the same URL, that they have not changed.
  The output record is the one embedding the same bytes would have produced.
* **One model.** A cache belongs to the one embedder service (one model, one
  preprocessing) that filled it; it is never shared or persisted, so a new model or new
  settings start with an empty one.
* **A miss only costs time.** A restarted process or another replica starts empty and
  embeds normally; an image evicted, or one that changed, is embedded normally.
* **Bounded memory.** At most ``capacity`` images, least recently used evicted first:
  about 2.6 KiB per image for a 512-d model (the vector is 2 KiB), plus the thumbnail
  (a few KiB) for inline images (docs/image-reuse.md).

Thread-safe: the embedder's prepare threads share one. Records of one product are
handled one at a time, and the images of one record have ids of their own, so an entry
is never raced on by two images.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from catalens.embedder.sources import Fetched, Validators
from catalens.schemas import ImageRef
from catalens.schemas.embedding import Vector
from catalens.schemas.event import ProductImage

Fetch = Callable[[ImageRef, Validators | None], Fetched]

# The outcome of an upsert whose vector was reused (catalens_records_total{outcome}).
REUSED = "reused"


def image_digest(data: bytes) -> bytes:
    """What identifies an image's bytes: a 256-bit digest, beyond any accidental collision."""
    return hashlib.blake2b(data, digest_size=32).digest()


@dataclass(frozen=True, slots=True)
class Known:
    """What was made of a product's image: all an embedding record needs besides the
    event itself."""

    digest: bytes
    vector: Vector
    thumbnail: str | None
    # The event's image URL the validators were answered for (None: a path or inline).
    url: str | None = None
    validators: Validators | None = None

    def conditions(self, ref: ImageRef) -> Validators | None:
        """Validators to send when fetching ``ref``: only for the URL they came from."""
        if ref.url is None or ref.url != self.url:
            return None
        return self.validators


@dataclass(frozen=True, slots=True)
class Origin:
    """Which image a vector is being made of: what :meth:`ImageReuse.remember` keeps."""

    digest: bytes
    url: str | None
    validators: Validators | None


@dataclass(frozen=True, slots=True)
class Fresh:
    """Image bytes no vector is known for: to decode and embed, then remember by their
    ``origin`` (kept apart so the bytes can be freed once decoded)."""

    data: bytes
    origin: Origin


# (product id, image id): what an entry is for.
ImageKey = tuple[str, str]


class ImageReuse:
    """A size-bounded LRU of what was made of each product image (see the module)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._known: OrderedDict[ImageKey, Known] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._known)

    def read(self, product_id: str, image: ProductImage, fetch: Fetch) -> Known | Fresh:
        """Fetch ``image`` of ``product_id`` (conditionally when that can spare the bytes)
        and return what is known of it, or the bytes to embed. Raises what ``fetch``
        raises."""
        key = (product_id, image.id)
        ref = image.ref
        known = self._recall(key)
        fetched = fetch(ref, known.conditions(ref) if known else None)
        if fetched.data is None:
            assert known is not None  # only a conditional fetch answers without a body
            return known
        digest = image_digest(fetched.data)
        # An inline image is shown by a thumbnail of it, which a vector first made for a
        # URL or a path of the same bytes did not need: without it, embed again.
        unshowable = ref.data is not None and known is not None and not known.thumbnail
        if known is None or known.digest != digest or unshowable:
            return Fresh(fetched.data, Origin(digest, ref.url, fetched.validators))
        if (known.url, known.validators) != (ref.url, fetched.validators):
            # Same bytes under a new URL or new validators: ask with those next time.
            known = replace(known, url=ref.url, validators=fetched.validators)
            self._store(key, known)
        return known

    def remember(
        self, key: ImageKey, origin: Origin, vector: Vector, thumbnail: str | None
    ) -> None:
        """Keep what was made of the image ``origin`` for the next upsert of the product
        image ``key`` (product id, image id)."""
        if self.capacity == 0:
            return
        # A copy: the encoder's vectors are rows of its batch, and a kept row would keep
        # the whole batch alive.
        own = vector.copy()
        own.flags.writeable = False
        known = Known(origin.digest, own, thumbnail, origin.url, origin.validators)
        self._store(key, known)

    def _recall(self, key: ImageKey) -> Known | None:
        with self._lock:
            known = self._known.get(key)
            if known is not None:
                self._known.move_to_end(key)
            return known

    def _store(self, key: ImageKey, known: Known) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._known[key] = known
            self._known.move_to_end(key)
            while len(self._known) > self.capacity:
                self._known.popitem(last=False)
