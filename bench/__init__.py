"""Benchmarks that start real servers and print ratios measured in one run."""
