select
    event_id,
    event_type,
    actor_login,
    repo_name,
    org_login,
    is_public,
    payload_action,
    commit_count,
    ref,
    ref_type,
    head_sha,
    item_number,
    release_tag,
    payload_json,
    created_at,
    ingested_at
from {{ source('raw', 'github_user_events') }}
