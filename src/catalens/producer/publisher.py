"""Publishing events, keyed by product id, with delivery confirmation."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from catalens.kafka import DeliveryError, RecordPublisher
from catalens.schemas import ProductImageEvent


class EventPublisher:
    """Publishes events to ``topic`` keyed by product id, many at a time, and reports
    which of them the broker acknowledged (acks=all)."""

    def __init__(self, publisher: RecordPublisher, topic: str) -> None:
        self._publisher = publisher
        self._topic = topic

    def publish_many(
        self,
        events: Iterable[ProductImageEvent],
        on_progress: Callable[[int], None] | None = None,
        timeout_s: float = 60.0,
    ) -> tuple[int, list[tuple[str, DeliveryError]]]:
        """Publish all events, pipelined, and wait up to ``timeout_s`` for the broker to
        acknowledge them; returns (acknowledged, failures by event id, ``*`` for events
        still unacknowledged then)."""
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
