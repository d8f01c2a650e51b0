"""The operator's commands: ``catalens up|publish|embedder|sink|api|dlq|index|status|eval``."""
