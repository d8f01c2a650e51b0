"""What each kind of failure leads to: one base, one family per consequence.

Every error Catalens raises on purpose derives from :class:`CatalensError`:

* :class:`BadInput` — a record that breaks a contract (an unparseable event, an image that
  is missing, too large or not an image, a refused source): dead-lettered with a
  machine-readable :class:`Reason`; the stream moves on.
* :class:`TransientError` — a dependency (broker, Milvus, network) is away: retried with
  backoff (``catalens.retry``), never skipped.
* :class:`Stopped` — the service was asked to stop while it waited: a clean exit, status 0.
* :class:`OperatorError` — the deployment contradicts itself or names what is not there
  (an index of another model or layout, a model that cannot be found, a generation that
  does not exist, a promotion the check refuses): the service stops consuming, turns
  unready and says why, and a command exits with status 1, since neither retrying nor
  skipping can help.
* :class:`UsageError` — a command line or configuration that cannot be read: status 2.
* anything else is a bug: it crashes loudly, and the supervisor restarts the service.

One deliberate exception to "transient faults wait": an image URL that times out or
answers 5xx is a BadInput after ``CATALENS_FETCH_RETRIES`` tries, because one bad CDN
URL must not stall a partition holding everyone else's products (README, "Configuration").
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Machine-readable reason codes of dead letters (the dead-letter contract,
    ``catalens.schemas.dead_letter``). Each means: fix the input, then replay."""

    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    KEY_MISMATCH = "key_mismatch"
    IMAGE_NOT_FOUND = "image_not_found"
    FETCH_TIMEOUT = "fetch_timeout"
    FETCH_FAILED = "fetch_failed"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT_IMAGE = "corrupt_image"
    IMAGE_TOO_LARGE = "image_too_large"
    TOO_MANY_PIXELS = "too_many_pixels"
    FORBIDDEN_SOURCE = "forbidden_source"
    # Schema version 2 (several images and product text): each rule has its own reason.
    TOO_MANY_IMAGES = "too_many_images"
    DUPLICATE_IMAGE_ID = "duplicate_image_id"
    IMAGE_WITHOUT_SOURCE = "image_without_source"
    TEXT_TOO_LONG = "text_too_long"
    ATTRIBUTES_TOO_LARGE = "attributes_too_large"
    # An event larger than CATALENS_MAX_EVENT_BYTES: dead-lettered unparsed, its value
    # left out of the letter (DeadLetter.value_omitted).
    EVENT_TOO_LARGE = "event_too_large"


class CatalensError(Exception):
    """The base of every error Catalens raises on purpose. ``message`` is one line for
    people (a command prints it, a service logs it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(CatalensError):
    """A record that breaks a contract. It is dead-lettered with ``reason``, never retried."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        product_id: str | None = None,
        event_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.product_id = product_id
        self.event_id = event_id

    def about(self, product_id: str, event_id: str) -> BadInput:
        """The same error, naming the event it was found in."""
        return BadInput(self.reason, self.message, product_id=product_id, event_id=event_id)


class TransientError(CatalensError):
    """A dependency (broker, database, network) is away for now; the work must be retried."""


class Stopped(CatalensError):
    """The service was asked to stop while it was waiting for a dependency."""


class OperatorError(CatalensError):
    """A setting or a stored layout that only an operator can resolve."""


class UsageError(CatalensError):
    """A command line or configuration that cannot be read (exit status 2)."""
