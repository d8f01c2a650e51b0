"""The sink: embedding records in, Milvus upserts and deletes out, in version order.

``plan`` holds the pure decisions (collapse a batch per product, guard versions against
what is stored); ``service`` is the consumer loop that reads, writes and then commits.
"""
