# Salt's built-in service beacon event -> one runner call (same handler as
# hx_health; the runner maps the service to hx:services and re-checks it).
# Unsigned: hx_gate.admit holds each minion to unsigned_rate before a runner
# job exists; where the gate is not loaded, every event goes on.
{%- if 'hx_gate.admit' not in salt or salt['hx_gate.admit'](tag, data) %}
hx_remediate_service:
  runner.hx_remediate.handle:
    - args:
      - tag: {{ tag | json }}
      - data: {{ data | json }}
{%- endif %}
