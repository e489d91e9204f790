"""The reference pipeline: Nightscout glucose readings, GitHub user events and repository stats."""
