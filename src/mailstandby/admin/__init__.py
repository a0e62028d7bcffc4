"""The administrators' HTTP API, its authentication and metrics."""
