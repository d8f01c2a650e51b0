"""What each kind of failure leads to: one type per consequence.

* :class:`BadInput` — a record that breaks a contract (an unparseable event, an image that
  is missing, too large or not an image, a refused source): dead-lettered with a
  machine-readable reason; the stream moves on.
* :class:`TransientError` — a dependency (broker, Milvus, network) is away: retried with
  backoff (``catalens.retry``), never skipped.
* :class:`Stopped` — the service was asked to stop while it waited: a clean exit, status 0.
* :class:`OperatorError` — the deployment contradicts itself (an index of another model
  or layout): the service stops consuming, turns unready and says why, since neither
  retrying nor skipping can help.
* anything else is a bug: it crashes loudly, and the supervisor restarts the service.

One deliberate exception to "transient faults wait": an image URL that times out or
answers 5xx is a BadInput after ``CATALENS_FETCH_RETRIES`` tries, because one bad CDN
URL must not stall a partition holding everyone else's products (README, "Configuration").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the reasons live with the dead-letter contract
    from catalens.schemas.dead_letter import Reason


class BadInput(Exception):
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
        self.message = message
        self.product_id = product_id
        self.event_id = event_id

    def about(self, product_id: str, event_id: str) -> BadInput:
        """The same error, naming the event it was found in."""
        return BadInput(self.reason, self.message, product_id=product_id, event_id=event_id)


class TransientError(Exception):
    """A dependency (broker, database, network) is away for now; the work must be retried."""


class Stopped(Exception):
    """The service was asked to stop while it was waiting for a dependency."""


class OperatorError(RuntimeError):
    """A setting or a stored layout that only an operator can resolve."""
