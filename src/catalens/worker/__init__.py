"""What every long-running worker (embedder, sink) shares: its metrics, its health
endpoint, the watcher of its group's lag, and the start-up that wires them."""
