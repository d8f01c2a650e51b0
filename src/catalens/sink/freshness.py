"""How old the changes a sink applied were when Milvus returned (pure).

Two clocks, both ending when the write returned: *freshness* starts at the event's
``occurred_at`` (the catalog's own clock: how stale search results can be), *pipeline
latency* at the input record's Kafka timestamp (Catalens' own share of it, carried by the
embedder in the ``catalens-input-timestamp`` header). Only the records whose change was
applied count — a product written or deleted — so records that changed nothing
(stale, re-emitted, skipped) do not make the pipeline look slower or faster than it is.
A tombstone has no ``occurred_at``: it counts for pipeline latency only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from catalens.kafka.records import Record
from catalens.schemas import Op
from catalens.schemas.embedding import INPUT_TIMESTAMP_HEADER
from catalens.sink.plan import Item
from catalens.store.values import Plan


@dataclass(slots=True)
class Ages:
    """Seconds from each applied change's start to ``now``, by clock."""

    freshness: list[float] = field(default_factory=list)
    pipeline: list[float] = field(default_factory=list)


def applied_ages(items: Sequence[tuple[Record, Item]], plan: Plan, now_s: float) -> Ages:
    """The ages of the changes ``plan`` applied, from the batch's ``items``, at ``now_s``
    (seconds since the epoch). An upsert is matched to its record by input position; a
    delete to its product's last delete or tombstone in the batch, the one that decided
    it (not a later, stale upsert: its age is not the delete's)."""
    by_position = {(item[0], item[2]): (record, item) for record, item in items}
    last: dict[str, tuple[Record, Item]] = {}
    for record, item in items:
        product_id, embedding, position = item
        deleting = embedding is None or embedding.op is Op.DELETE
        if deleting and (product_id not in last or position > last[product_id][1][2]):
            last[product_id] = (record, item)
    ages = Ages()
    written = dict.fromkeys((row.product_id, row.input_offset) for row in plan.upserts)
    applied = [by_position.get(product) for product in written]  # once per product
    applied += [last.get(product_id) for product_id in plan.deleted()]
    for match in applied:
        if match is None:
            continue
        record, (_product_id, embedding, _position) = match
        if embedding is not None:
            ages.freshness.append(now_s - embedding.occurred_at.timestamp())
        if (stamp_ms := input_timestamp_ms(record)) is not None:
            ages.pipeline.append(now_s - stamp_ms / 1000)
    return ages


def input_timestamp_ms(record: Record) -> int | None:
    """The input record's timestamp the embedder put on ``record`` (None: none, or garbled)."""
    raw = next((v for k, v in record.headers if k == INPUT_TIMESTAMP_HEADER), None)
    if raw is None:
        return None
    try:
        stamp = int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return stamp if stamp > 0 else None
