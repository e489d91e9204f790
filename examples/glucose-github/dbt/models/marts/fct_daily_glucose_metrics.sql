{# Consensus CGM metrics per UTC day: time in ranges, variability, estimated A1c and GMI. #}
select
    reading_date,
    cast(count(*) as bigint) as reading_count,
    round(avg(glucose_mg_dl), 1) as avg_glucose_mg_dl,
    min(glucose_mg_dl) as min_glucose_mg_dl,
    max(glucose_mg_dl) as max_glucose_mg_dl,
    round(stddev_samp(glucose_mg_dl), 1) as stddev_glucose_mg_dl,
    round(100 * stddev_samp(glucose_mg_dl) / nullif(avg(glucose_mg_dl), 0), 1) as coefficient_of_variation_pct,
    {{ pct_of_rows('glucose_mg_dl between 70 and 180') }} as time_in_range_pct,
    {{ pct_of_rows('glucose_mg_dl < 70') }} as time_below_range_pct,
    {{ pct_of_rows('glucose_mg_dl > 180') }} as time_above_range_pct,
    {{ pct_of_rows('glucose_mg_dl < 54') }} as time_very_low_pct,
    {{ pct_of_rows('glucose_mg_dl > 250') }} as time_very_high_pct,
    round((avg(glucose_mg_dl) + 46.7) / 28.7, 2) as estimated_a1c_pct,
    round(3.31 + 0.02392 * avg(glucose_mg_dl), 2) as gmi_pct,
    round(100 * cast(count(*) as double) / 288, 1) as data_completeness_pct
from {{ ref('fct_glucose_readings') }}
group by reading_date
