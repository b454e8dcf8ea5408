select count(*) as orders, sum(amount) as revenue from {{ ref('paid_orders') }}
