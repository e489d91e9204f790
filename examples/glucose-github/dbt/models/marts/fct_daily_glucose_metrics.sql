{#
  Consensus CGM metrics per day of the site (see stg_glucose_entries), unrounded: round for display only.
  Each equals iglu's function on that day's readings (tests/examples/test_iglu_reference.py checks it):

  - time in ranges of the 2019 International Consensus on Time in Range (Battelino et al., Diabetes Care
    42:1593): very low < 54, low 54-69, in range 70-180, high 181-250, very high > 250 mg/dL, with the
    totals below (< 70) and above (> 180) range, in percent of the day's readings;
  - mean, sample SD, CV = 100 * SD / mean, min and max;
  - reading_interval_min: the sensor's interval, the median gap between the day's readings rounded to a
    minute (iglu's dt0: 5 for Dexcom, 1 for a Libre 2 or 3 uploading every minute, 15 for Libre history);
    data_completeness_pct = 100 * readings * interval / 1440 (iglu's active_percent over one day), at most 100;
  - GMI = 3.31 + 0.02392 * mean and eA1c = (46.7 + mean) / 28.7 over the gmi_window_days days ending on
    the day (at least 14, as the consensus defines them), empty unless those days hold
    gmi_min_completeness_pct of their possible readings; the window's mean and completeness are beside them;
  - error_code_count: the day's CGM error codes (sgv < 39), left out of every metric above. A day with
    error codes only has a row with its count and empty metrics.
#}
{%- set window_days = var('gmi_window_days', 14) | int -%}
{%- set min_completeness = var('gmi_min_completeness_pct', 70) | float -%}
{%- if window_days < 14 -%}
  {{ exceptions.raise_compiler_error("gmi_window_days is " ~ window_days ~ ": GMI and eA1c are defined over 14 days or more") }}
{%- endif %}

with entries as (
    select reading_date, date_ms, sgv, is_error_code from {{ ref('stg_glucose_entries') }}
),

readings as (
    select reading_date, date_ms, sgv, cast(sgv as double) as glucose from entries where not is_error_code
),

gaps as (
    select
        reading_date,
        cast(date_ms - lag(date_ms) over (partition by reading_date order by date_ms) as double) / 60000 as gap_min
    from readings
),

ranked_gaps as (
    select
        reading_date,
        gap_min,
        row_number() over (partition by reading_date order by gap_min) as position,
        count(*) over (partition by reading_date) as gap_count
    from gaps
    where gap_min is not null
),

medians as (
    select reading_date, avg(gap_min) as median_gap_min
    from ranked_gaps
    where position in (floor(cast(gap_count + 1 as double) / 2), ceiling(cast(gap_count + 1 as double) / 2))
    group by reading_date
),

intervals as (
    select reading_date, nullif({{ round_half_even('median_gap_min') }}, 0) as interval_min from medians
),

daily as (
    select
        reading_date,
        count(*) as reading_count,
        sum(glucose) as glucose_sum,
        avg(glucose) as avg_glucose,
        min(sgv) as min_glucose,
        max(sgv) as max_glucose,
        stddev_samp(glucose) as sd_glucose,
        sum(case when sgv < 54 then 1 else 0 end) as very_low,
        sum(case when sgv between 54 and 69 then 1 else 0 end) as low,
        sum(case when sgv between 70 and 180 then 1 else 0 end) as in_range,
        sum(case when sgv between 181 and 250 then 1 else 0 end) as high,
        sum(case when sgv > 250 then 1 else 0 end) as very_high
    from readings
    group by reading_date
),

errors as (
    select reading_date, count(*) as error_code_count from entries where is_error_code group by reading_date
),

days as (
    select reading_date from daily
    union
    select reading_date from errors
),

measured as (
    select
        days.reading_date,
        coalesce(daily.reading_count, 0) as reading_count,
        coalesce(errors.error_code_count, 0) as error_code_count,
        daily.glucose_sum,
        daily.avg_glucose,
        daily.min_glucose,
        daily.max_glucose,
        daily.sd_glucose,
        daily.very_low,
        daily.low,
        daily.in_range,
        daily.high,
        daily.very_high,
        intervals.interval_min,
        {{ capped_at_100('100 * cast(daily.reading_count as double) * intervals.interval_min / 1440') }} as completeness
    from days
    left join daily on daily.reading_date = days.reading_date
    left join errors on errors.reading_date = days.reading_date
    left join intervals on intervals.reading_date = days.reading_date
),

windowed as (
    select
        target.reading_date,
        sum(earlier.glucose_sum) / nullif(sum(earlier.reading_count), 0) as window_avg_glucose,
        sum(coalesce(earlier.completeness, 0)) / {{ window_days }} as window_completeness
    from measured as target
    inner join measured as earlier
        on earlier.reading_date <= target.reading_date
        and earlier.reading_date > {{ dbt.dateadd('day', -window_days, 'target.reading_date') }}
    group by target.reading_date
)

select
    measured.reading_date,
    cast(measured.reading_count as bigint) as reading_count,
    cast(measured.error_code_count as bigint) as error_code_count,
    measured.avg_glucose as avg_glucose_mg_dl,
    measured.min_glucose as min_glucose_mg_dl,
    measured.max_glucose as max_glucose_mg_dl,
    measured.sd_glucose as stddev_glucose_mg_dl,
    100 * measured.sd_glucose / nullif(measured.avg_glucose, 0) as coefficient_of_variation_pct,
    {{ pct('measured.very_low', 'nullif(measured.reading_count, 0)') }} as time_very_low_pct,
    {{ pct('measured.low', 'nullif(measured.reading_count, 0)') }} as time_low_pct,
    {{ pct('measured.very_low + measured.low', 'nullif(measured.reading_count, 0)') }} as time_below_range_pct,
    {{ pct('measured.in_range', 'nullif(measured.reading_count, 0)') }} as time_in_range_pct,
    {{ pct('measured.high + measured.very_high', 'nullif(measured.reading_count, 0)') }} as time_above_range_pct,
    {{ pct('measured.high', 'nullif(measured.reading_count, 0)') }} as time_high_pct,
    {{ pct('measured.very_high', 'nullif(measured.reading_count, 0)') }} as time_very_high_pct,
    cast(measured.interval_min as integer) as reading_interval_min,
    measured.completeness as data_completeness_pct,
    {{ window_days }} as gmi_window_days,
    windowed.window_avg_glucose as gmi_window_avg_glucose_mg_dl,
    windowed.window_completeness as gmi_window_completeness_pct,
    case
        when windowed.window_completeness >= {{ min_completeness }}
            then 3.31 + 0.02392 * windowed.window_avg_glucose
    end as gmi_pct,
    case
        when windowed.window_completeness >= {{ min_completeness }}
            then (46.7 + windowed.window_avg_glucose) / 28.7
    end as estimated_a1c_pct
from measured
inner join windowed on windowed.reading_date = measured.reading_date
