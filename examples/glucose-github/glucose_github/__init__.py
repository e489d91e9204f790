"""The glucose + GitHub example pipeline: Nightscout readings, GitHub user events and repository stats.

It uses cascade-ci exactly as a user's repository would: `cascade.toml` names the sources in
`glucose_github.sources`, the dbt project in `dbt/` and the pandera schemas in `glucose_github.schemas`.
"""
