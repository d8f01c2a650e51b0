"""What operators see: each service's Prometheus metrics, scraped over HTTP while the
real services run against the real broker and Milvus, agree with what was sent; a
dead-letter storm stops the embedder short of committing the stream."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.conftest import jpeg_bytes
from tests.integration.stack import Stack, event
from tests.metrics_scrape import exported_names, scrape, value
from tests.monitoring import referenced_metrics
from tests.waits import wait_for

pytestmark = pytest.mark.integration

GOOD = 6
EMBEDDER = {"role": "embedder"}
SINK = {"role": "sink"}


def counted(stack: Stack, role: str, outcome: str) -> float:
    return value(
        scrape(stack.metrics_url(role)),
        "catalens_records_total",
        {"role": role, "outcome": outcome},
    )


def test_worker_metrics_count_exactly_what_was_sent(stack: Stack) -> None:
    for i in range(GOOD):
        (stack.images / f"{i}.jpg").write_bytes(jpeg_bytes(seed=i))
    stack.extra_env["CATALENS_LOG_FORMAT"] = "json"
    stack.start("embedder", "sink", "api")
    good = [event(f"p{i}", 1, image={"path": str(stack.images / f"{i}.jpg")}) for i in range(GOOD)]
    missing = [
        event(f"m{i}", 1, image={"path": str(stack.images / f"no-{i}.jpg")}) for i in range(2)
    ]
    stack.publish(*good, *missing)
    stack.produce([(b"j0", b"{not json"), (b"j1", b"\xff\xfe")])
    stack.wait_indexed({f"p{i}": 1 for i in range(GOOD)})
    stack.publish(event("p0", 2, op="delete"), event("p1", 2, op="delete"))
    stack.wait_indexed({f"p{i}": 1 for i in range(2, GOOD)})
    # Counted when the output is acknowledged / the write returned: by now, or very soon.
    wait_for(lambda: counted(stack, "embedder", "deleted") == 2, 30, "the embedder's deletes")
    wait_for(lambda: counted(stack, "sink", "deleted") == 2, 30, "the sink's deletes")

    embedder = scrape(stack.metrics_url("embedder"))
    for outcome, count in [("embedded", GOOD), ("deleted", 2), ("dead_lettered", 4)]:
        assert value(embedder, "catalens_records_total", EMBEDDER | {"outcome": outcome}) == count
    for reason in ("image_not_found", "invalid_json"):
        assert value(embedder, "catalens_dead_letters_total", EMBEDDER | {"reason": reason}) == 2
    assert value(embedder, "catalens_embedder_fetch_seconds_count") == GOOD + 2
    assert value(embedder, "catalens_embedder_decode_seconds_count") == GOOD
    assert value(embedder, "catalens_embedder_batch_size_sum") == GOOD
    assert value(embedder, "catalens_ready", EMBEDDER) == 1
    assert value(embedder, "catalens_dead_letter_storm", EMBEDDER) == 0

    sink = scrape(stack.metrics_url("sink"))
    for outcome, count in [
        ("written", GOOD),
        ("deleted", 2),
        ("stale", 0),
        ("skipped", 0),
        ("dead_lettered", 0),
    ]:
        assert value(sink, "catalens_records_total", SINK | {"outcome": outcome}) == count
    # Every write and delete applied counts once, from its event and from its input record.
    assert value(sink, "catalens_freshness_seconds_count") == GOOD + 2
    assert value(sink, "catalens_pipeline_latency_seconds_count") == GOOD + 2
    assert value(sink, "catalens_sink_batch_size_sum") == GOOD + 2
    # The events say they happened in 2026-11-24: freshness is at least that old; the
    # pipeline's own latency (from the input record's timestamp) is seconds at most.
    assert value(sink, "catalens_pipeline_latency_seconds_sum") < 60 * (GOOD + 2)
    assert value(sink, "catalens_ready", SINK) == 1
    assert "catalens_consumer_lag" in sink  # its figures are wrong on Tansu: not checked

    stack.search("anything")
    api = exported_names(stack.metrics_url("api"))
    assert {"catalens_request_seconds_count", "catalens_search_seconds_count"} <= api

    # The dashboard and the alert rules read only what the running services export.
    exported = api | exported_names(stack.metrics_url("embedder"))
    exported |= exported_names(stack.metrics_url("sink"))
    assert referenced_metrics() - exported == set()

    # JSON logs: the embedder's lifecycle lines are JSON objects with the standard fields.
    lines = [json.loads(line) for line in stack.log("embedder").splitlines() if line[:1] == "{"]
    serving = [line for line in lines if line["message"].startswith("embedder serving")]
    assert serving and {"time", "level", "logger"} <= serving[0].keys()


def committed(stack: Stack, group: str) -> int:
    """Records of the input topic ``group`` has committed, over all partitions."""
    consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": group})
    try:
        topic = consumer.list_topics(stack.input_topic, timeout=10).topics[stack.input_topic]
        parts = [TopicPartition(stack.input_topic, p) for p in topic.partitions]
        return sum(max(0, tp.offset) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def storm(stack: Stack) -> float:
    """The embedder's storm gauge (0 while its endpoint is not up yet)."""
    stack.assert_running()
    try:
        return value(scrape(stack.metrics_url("embedder")), "catalens_dead_letter_storm")
    except httpx.HTTPError:
        return 0


def test_a_dead_letter_storm_stops_the_embedder_and_a_restart_after_the_fix_redoes_it(
    stack: Stack,
) -> None:
    """Every event's image is missing (as with a wrong CATALENS_IMAGE_ROOTS): the embedder
    stops, unready, after at most the minimum count, with the rest uncommitted; restarted
    with the cause gone (here: the guard off), it dead-letters the rest, and nothing is
    lost."""
    total = 60
    stack.extra_env |= {
        "CATALENS_DEAD_LETTER_STORM_WINDOW": "20",
        "CATALENS_DEAD_LETTER_STORM_MIN": "10",
    }
    group = f"t{stack.name}-embedder"
    events: list[dict[str, Any]] = [
        event(f"s{i}", 1, image={"path": str(stack.images / f"{uuid.uuid4().hex}.jpg")})
        for i in range(total)
    ]
    stack.publish(*events)
    stack.start("embedder")
    wait_for(lambda: storm(stack) == 1, 90, "the storm guard to trip")
    readyz = stack.metrics_url("embedder").replace("/metrics", "/readyz")
    assert httpx.get(readyz, timeout=5).status_code == 503
    families = scrape(stack.metrics_url("embedder"))
    assert value(families, "catalens_ready", EMBEDDER) == 0
    wait_for(
        lambda: value(scrape(stack.metrics_url("embedder")), "catalens_paused") == 1,
        5,
        "the paused gauge",
    )
    assert "dead-letter storm" in stack.log("embedder")
    stack.assert_running()  # stopped consuming, still alive and in its group
    # The tenth dead letter trips it and is not committed; nor is anything after it.
    assert committed(stack, group) <= 9

    assert stack.terminate("embedder") == 0
    stack.extra_env["CATALENS_DEAD_LETTER_STORM_RATIO"] = "0"
    stack.start("embedder")
    wait_for(lambda: committed(stack, group) == total, 90, "the restart to commit everything")
    # Letters produced after the trip but not committed are produced again: at least once.
    letters = stack.dead_letters(10 * total, timeout_s=15)
    assert {letter.product_id for letter in letters} == {e["product_id"] for e in events}
