select
    entry_id,
    cast(sgv as integer) as glucose_mg_dl,
    reading_timestamp,
    direction,
    trend,
    device,
    ingested_at
from {{ source('raw', 'glucose_entries') }}
where entry_type = 'sgv'
