select
    repo_name,
    snapshot_date,
    stargazers_count,
    forks_count,
    open_issues_count,
    watchers_count,
    language,
    is_archived,
    contributors_count,
    commits_last_4_weeks,
    commits_last_52_weeks,
    pushed_at,
    fetched_at
from {{ source('raw', 'github_repo_stats') }}
