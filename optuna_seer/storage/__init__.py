"""Where a study lives: storage URLs, the gRPC proxy and retries of transient storage errors."""
