{% test value_between(model, column_name, min_value, max_value) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}
{% endtest %}

{# The columns add up to `total` (within `tolerance`) on every row where they are all present. #}
{% test sums_to(model, columns, total=100, tolerance=0.000001) %}
select *
from {{ model }}
where {{ columns | join(' is not null and ') }} is not null
  and abs({{ columns | join(' + ') }} - {{ total }}) > {{ tolerance }}
{% endtest %}
