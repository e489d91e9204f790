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

{# A percentage of rows matching `condition`, as a double rounded to one decimal. #}
{% macro pct_of_rows(condition) -%}
  round(100 * cast(sum(case when {{ condition }} then 1 else 0 end) as double) / count(*), 1)
{%- endmacro %}
