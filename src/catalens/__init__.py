"""Catalens: streaming CLIP search for product catalogs.

Data flow (one subpackage per role)::

    producer ─▶ [catalens.product-images] ─▶ embedder ─▶ [catalens.product-embeddings]
             ─▶ sink ─▶ Milvus ◀─ query_api

``schemas`` holds the event contracts between them; ``settings``, ``kafka``, ``store``,
``encoder`` and ``localstack`` are the shared floors the roles stand on.
"""

__version__ = "0.1.0"
