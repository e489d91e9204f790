"""Sources of raw data; each returns a RawBatch."""
