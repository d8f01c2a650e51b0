"""The embedder: product-image events in, L2-normalised CLIP vectors out.

``steps`` (pure decisions per record), ``sources`` (guarded image reading),
``batcher`` (adaptive micro-batches) and ``service`` (the consumer group that wires
them to Kafka and the encoder, committing offsets only after outputs are acknowledged).
"""
