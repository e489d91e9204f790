with scored as (
    select
        *,
        round(
            3 * cast(commits_last_4_weeks as double)
            + cast(commits_last_52_weeks as double) / 52
            + 0.5 * cast(contributors_count as double),
            2
        ) as activity_score
    from {{ ref('stg_github_repo_stats') }}
)

select
    repo_name,
    snapshot_date,
    stargazers_count,
    forks_count,
    open_issues_count,
    watchers_count,
    language,
    contributors_count,
    commits_last_4_weeks,
    commits_last_52_weeks,
    activity_score,
    case
        when activity_score >= 100 then 'high'
        when activity_score >= 25 then 'medium'
        when activity_score > 0 then 'low'
        else 'inactive'
    end as activity_level,
    case
        when is_archived then 'archived'
        when {{ dbt.datediff('pushed_at', 'fetched_at', 'day') }} > 90 then 'stale'
        when open_issues_count > 10 * greatest(contributors_count, 1) then 'needs_attention'
        else 'healthy'
    end as health_status
from scored
