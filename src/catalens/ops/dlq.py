"""``catalens dlq show|replay``: look at dead letters, and send them back after a fix.

``show`` reads the whole dead-letter topic without committing anything. ``replay``
re-publishes each selected letter's original key and value to its source topic; it
reads as the consumer group ``catalens-dlq-replay`` and commits what it replayed, so a
second replay only sends letters that arrived since. A letter that could not carry its
event (``value_omitted``: an event too large) is passed over, saying so: replaying it
would publish a tombstone, deleting the product.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

from pydantic import ValidationError

from catalens.errors import TransientError
from catalens.kafka import DeliveryError
from catalens.kafka.client import Publisher, Source, broker_topics
from catalens.ops.bounded import bounded, try_timeout
from catalens.schemas import DeadLetter
from catalens.settings import CatalensSettings

# How long a replayed event may wait for the broker's acknowledgement.
REPLAY_ACK_S = 30


def read_letters(source: Source, idle_timeout_s: float, limit: int):  # type: ignore[no-untyped-def]
    """Yield (record, letter) until ``idle_timeout_s`` passes without a new record."""
    last = time.monotonic()
    seen = 0
    while seen < limit and time.monotonic() - last < idle_timeout_s:
        for record in source.poll(100, 0.5):
            last = time.monotonic()
            try:
                letter = DeadLetter.model_validate_json(record.value or b"")
            except ValidationError:
                continue
            seen += 1
            yield record, letter
            if seen >= limit:
                return


def run_dlq(settings: CatalensSettings, args: argparse.Namespace) -> int:
    """Show or replay the selected dead letters; :class:`TransientError` when the broker
    cannot be reached within ``settings.connect_timeout_s`` (reading an unreachable broker
    would look like an empty topic) or a replayed event is not acknowledged."""
    bounded(
        settings,
        lambda: broker_topics(settings, timeout_s=try_timeout(settings)),
        what="reach Kafka",
    )
    replay = args.action == "replay"
    group = "catalens-dlq-replay" if replay else f"catalens-dlq-show-{uuid.uuid4()}"
    source = Source(settings, group_id=group, topics=[settings.dlq_topic])
    publisher = Publisher(settings) if replay else None
    reasons = set(args.reason or ())
    products = set(args.product or ())
    shown = replayed = omitted = 0
    try:
        for record, letter in read_letters(source, args.timeout, args.limit):
            if (reasons and letter.reason.value not in reasons) or (
                products and letter.product_id not in products
            ):
                if replay:
                    source.mark_done({record.tp: record.offset + 1})
                continue
            if publisher is None:
                shown += 1
                print(
                    json.dumps(
                        {
                            "reason": letter.reason.value,
                            "message": letter.message,
                            "product_id": letter.product_id,
                            "event_id": letter.event_id,
                            "source": f"{letter.source_topic}/{letter.source_partition}"
                            f"@{letter.source_offset}",
                            "failed_at": letter.failed_at.isoformat(),
                            "value_omitted": letter.value_omitted,
                        }
                    )
                )
                continue
            if letter.value_omitted:
                # Replaying the letter would publish a tombstone: the product deleted.
                omitted += 1
                print(
                    f"not replayed: {letter.source_topic}/{letter.source_partition}"
                    f"@{letter.source_offset} ({letter.reason.value}) was too large to keep in"
                    " its dead letter; publish it again from the catalog",
                    file=sys.stderr,
                )
                source.mark_done({record.tp: record.offset + 1})
                continue
            answers: list[DeliveryError | None] = []
            publisher.produce(
                letter.source_topic,
                letter.original_key(),
                letter.original_value(),
                on_delivery=answers.append,
            )
            # Not acknowledged in time, or answered with an error (refused, timed out): the
            # letter stays uncommitted, for the next replay.
            unacknowledged = publisher.flush(REPLAY_ACK_S)
            failed = [error for error in answers if error is not None]
            if unacknowledged or failed:
                why = f": {failed[0]}" if failed else f" within {REPLAY_ACK_S} s"
                raise TransientError(
                    f"a replayed event was not acknowledged{why}; the {replayed} replayed"
                    " before it are committed, nothing after"
                )
            source.mark_done({record.tp: record.offset + 1})
            replayed += 1
    finally:
        source.close()
    if replay:
        left = f" ({omitted} without their event, not replayed)" if omitted else ""
        print(f"replayed {replayed} dead letters{left}")
    else:
        print(f"{shown} dead letters")
    return 0
