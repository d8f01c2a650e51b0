"""What each kind of failure leads to.

* bad input — a record that breaks a contract: dead-lettered with a reason, the stream
  moves on (``catalens.schemas.EventError``, ``catalens.images.ImageError``);
* transient — a dependency is away: retried with backoff, never skipped
  (``catalens.retry.TransientError``);
* stopped — asked to stop while waiting: a clean exit (``catalens.retry.Stopped``);
* operator error — the deployment contradicts itself (an index of another model or
  layout): the service stops consuming, turns unready and says why, since neither
  retrying nor skipping can help (:class:`OperatorError`);
* anything else is a bug: it crashes loudly, and the supervisor restarts the service.
"""

from __future__ import annotations


class OperatorError(RuntimeError):
    """A setting or a stored layout that only an operator can resolve."""
