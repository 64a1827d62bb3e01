# hx_health beacon event -> one runner call. Everything is decided in
# hx_remediate.handle (docs/reference/hx_remediate.md); nothing is rendered here
# but the event itself, so a flood of events stays cheap for the reactor.
# hx_gate.admit (in this reactor process) drops a sender over its rate before a
# runner job exists; where the gate is not loaded, every event goes on.
{%- if 'hx_gate.admit' not in salt or salt['hx_gate.admit'](tag, data) %}
hx_remediate:
  runner.hx_remediate.handle:
    - args:
      - tag: {{ tag | json }}
      - data: {{ data | json }}
{%- endif %}
