{# Portable SQL between DuckDB (embedded) and Trino (production). #}

{# ISO day of week: 1 = Monday ... 7 = Sunday. DuckDB's extract(dow) counts 0 = Sunday. #}
{% macro iso_day_of_week(column) -%}
  {{ return(adapter.dispatch('iso_day_of_week')(column)) }}
{%- endmacro %}

{% macro default__iso_day_of_week(column) -%}
  cast(day_of_week({{ column }}) as integer)
{%- endmacro %}

{% macro duckdb__iso_day_of_week(column) -%}
  cast(isodow({{ column }}) as integer)
{%- endmacro %}

{# The percentage (a double, unrounded) of `count` in `total`. #}
{% macro pct(count, total) -%}
  100 * cast({{ count }} as double) / {{ total }}
{%- endmacro %}

{# Python's round(): to the nearest whole number, a half to the even one (as numpy and iglu round). #}
{% macro round_half_even(value) -%}
  case
    when {{ value }} - floor({{ value }}) = 0.5 then 2 * round({{ value }} / 2)
    else round({{ value }})
  end
{%- endmacro %}

{# `value`, at most 100; NULL stays NULL (DuckDB's least() would skip it and answer 100). #}
{% macro capped_at_100(value) -%}
  case when {{ value }} > 100 then 100 else {{ value }} end
{%- endmacro %}
