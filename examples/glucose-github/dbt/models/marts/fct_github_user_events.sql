select
    event_id,
    event_type,
    case
        when event_type in ('PushEvent', 'CreateEvent', 'DeleteEvent', 'ReleaseEvent') then 'code'
        when event_type in (
            'PullRequestEvent', 'PullRequestReviewEvent',
            'PullRequestReviewCommentEvent', 'PullRequestReviewThreadEvent'
        ) then 'pull_request'
        when event_type in ('IssuesEvent', 'IssueCommentEvent', 'CommitCommentEvent') then 'issue'
        when event_type in (
            'WatchEvent', 'ForkEvent', 'SponsorshipEvent', 'PublicEvent', 'MemberEvent', 'GollumEvent'
        ) then 'community'
        else 'other'
    end as event_category,
    actor_login,
    repo_name,
    {{ dbt.split_part('repo_name', "'/'", 1) }} as repo_owner,
    payload_action,
    commit_count,
    ref,
    item_number,
    release_tag,
    payload_json,
    created_at,
    cast(created_at as date) as event_date,
    cast(extract(hour from created_at) as integer) as event_hour,
    {{ iso_day_of_week('created_at') }} as day_of_week,
    {{ iso_day_of_week('created_at') }} in (6, 7) as is_weekend
from {{ ref('stg_github_user_events') }}
