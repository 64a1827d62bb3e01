# Salt's built-in service beacon event -> one runner call (same handler as
# hx_health; the runner maps the service to hx:services and re-checks it).
hx_remediate_service:
  runner.hx_remediate.handle:
    - args:
      - tag: {{ tag | json }}
      - data: {{ data | json }}
