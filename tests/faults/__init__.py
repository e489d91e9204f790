"""Fault tests: concurrency, kill -9, bad payloads, unavailable services (issue 7)."""
