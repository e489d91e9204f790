{# One row per glucose reading (error codes left out; see stg_glucose_entries). Day and hour are the site's. #}
select
    entry_id,
    sgv as glucose_mg_dl,
    reading_timestamp,
    reading_date,
    cast(extract(hour from local_time) as integer) as hour_of_day,
    {{ iso_day_of_week('local_time') }} as day_of_week,
    site_utc_offset,
    direction,
    case
        when sgv < 54 then 'very_low'
        when sgv < 70 then 'low'
        when sgv <= 180 then 'in_range'
        when sgv <= 250 then 'high'
        else 'very_high'
    end as glucose_category,
    sgv between 70 and 180 as is_in_range,
    device
from {{ ref('stg_glucose_entries') }}
where not is_error_code
