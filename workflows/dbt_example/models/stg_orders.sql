select id, customer, amount, status from {{ ref('raw_orders') }}
