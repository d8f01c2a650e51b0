"""Publishing events, keyed by product id, with delivery confirmation."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from catalens.kafka import DeliveryError, RecordPublisher
from catalens.schemas import ProductImageEvent


class EventPublisher:
    """``publish`` returns once the broker acknowledged the event (acks=all) or raises
    :class:`DeliveryError`. ``publish_many`` pipelines many events and confirms all."""

    def __init__(self, publisher: RecordPublisher, topic: str) -> None:
        self._publisher = publisher
        self._topic = topic

    def publish(self, event: ProductImageEvent, timeout_s: float = 30.0) -> None:
        outcome: list[DeliveryError | None] = []
        done = threading.Event()

        def delivered(error: DeliveryError | None) -> None:
            outcome.append(error)
            done.set()

        self._publisher.produce(self._topic, event.key, event.to_json(), on_delivery=delivered)
        self._publisher.flush(timeout_s)
        if not done.is_set():
            raise DeliveryError(
                f"event {event.event_id} not acknowledged in {timeout_s}s", fatal=False
            )
        if outcome[0] is not None:
            raise outcome[0]

    def delete(self, product_id: str) -> None:
        """Publish a tombstone for ``product_id`` (deletes whatever version is indexed)."""
        errors: list[DeliveryError] = []
        self._publisher.produce(
            self._topic,
            product_id.encode(),
            None,
            on_delivery=lambda e: errors.append(e) if e else None,
        )
        self._publisher.flush(30)
        if errors:
            raise errors[0]

    def publish_many(
        self,
        events: Iterable[ProductImageEvent],
        on_progress: Callable[[int], None] | None = None,
        timeout_s: float = 60.0,
    ) -> tuple[int, list[tuple[str, DeliveryError]]]:
        """Publish all events; returns (acknowledged, failures by event id)."""
        acknowledged = 0
        failures: list[tuple[str, DeliveryError]] = []

        def callback(event_id: str) -> Callable[[DeliveryError | None], None]:
            def delivered(error: DeliveryError | None) -> None:
                nonlocal acknowledged
                if error is None:
                    acknowledged += 1
                    if on_progress is not None:
                        on_progress(1)
                else:
                    failures.append((event_id, error))

            return delivered

        for event in events:
            self._publisher.produce(
                self._topic, event.key, event.to_json(), on_delivery=callback(event.event_id)
            )
            self._publisher.poll(0)
        left = self._publisher.flush(timeout_s)
        if left:
            failures.append(("*", DeliveryError(f"{left} events not acknowledged", fatal=False)))
        return acknowledged, failures
