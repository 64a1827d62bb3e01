# hx_health beacon event -> one runner call. Everything is decided in
# hx_remediate.handle (docs/reference/hx_remediate.md); nothing is rendered here
# but the event itself, so a flood of events stays cheap for the reactor.
hx_remediate:
  runner.hx_remediate.handle:
    - args:
      - tag: {{ tag | json }}
      - data: {{ data | json }}
