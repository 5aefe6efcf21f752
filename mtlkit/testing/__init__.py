"""Property-testing kit for aggregator authors (see docs/testing-aggregators.md)."""
