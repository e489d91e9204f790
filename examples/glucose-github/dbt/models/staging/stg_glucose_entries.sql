{#
  One row per CGM reading, as Nightscout counts them: `sgv` entries not marked deleted, one per reading
  time (a reading uploaded twice, under two ids, counts once; the copy ingested last is kept, as
  Nightscout's upsert keeps the last write). Error codes (sgv < 39) stay, flagged: the marts leave them
  out of the glucose metrics and count them. Local time is the reading's instant shifted by the site's
  UTC offset (raw.glucose_entries.site_utc_offset), so its date and hour are the site's.
#}
with entries as (
    select
        entry_id,
        cast(sgv as integer) as sgv,
        date_ms,
        reading_timestamp,
        {{ dbt.dateadd('minute', 'coalesce(site_utc_offset, 0)', 'reading_timestamp') }} as local_time,
        coalesce(site_utc_offset, 0) as site_utc_offset,
        direction,
        trend,
        device,
        ingested_at,
        row_number() over (
            partition by coalesce(date_ms, 0), case when date_ms is null then entry_id end
            order by ingested_at desc, entry_id
        ) as copy_number
    from {{ source('raw', 'glucose_entries') }}
    where entry_type = 'sgv' and coalesce(is_valid, true)
)

select
    entry_id,
    sgv,
    sgv < {{ var('error_codes_below', 39) }} as is_error_code,
    date_ms,
    reading_timestamp,
    local_time,
    cast(local_time as date) as reading_date,
    site_utc_offset,
    direction,
    trend,
    device,
    ingested_at
from entries
where copy_number = 1
