select
    entry_id,
    glucose_mg_dl,
    reading_timestamp,
    cast(reading_timestamp as date) as reading_date,
    cast(extract(hour from reading_timestamp) as integer) as hour_of_day,
    {{ iso_day_of_week('reading_timestamp') }} as day_of_week,
    direction,
    case
        when glucose_mg_dl is null then null
        when glucose_mg_dl < 54 then 'very_low'
        when glucose_mg_dl < 70 then 'low'
        when glucose_mg_dl <= 180 then 'in_range'
        when glucose_mg_dl <= 250 then 'high'
        else 'very_high'
    end as glucose_category,
    glucose_mg_dl between 70 and 180 as is_in_range,
    device
from {{ ref('stg_glucose_entries') }}
