"""Benchmarks that print the figures the issues ask for (``make bench``); never run in tests."""
