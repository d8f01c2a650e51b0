"""The query API: CLIP text (and image) search over the Milvus collection."""
