"""Sources: the Source contract (`base`) and the built-in kinds `python`, `dlt` and `files`."""
