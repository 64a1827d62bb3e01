{#- Wait until the targeted minions' health checks pass, or fail the orchestration.

    salt-run state.orchestrate orch.health_gate pillar='{"tgt": "app*", "checks": ["app_http"], "timeout": 120}'

Pillar (all optional): tgt ("*"), tgt_type (glob), checks (all configured),
timeout (60 s), interval (2 s), allow_warning (false).
Every targeted minion must answer: a down minion fails the gate. -#}
{%- set p = pillar %}
hx_health_gate:
  salt.function:
    - name: state.single
    - tgt: {{ p.get("tgt", "*") | json }}
    - tgt_type: {{ p.get("tgt_type", "glob") | json }}
    - expect_minions: true
    - timeout: {{ (p.get("timeout", 60) | int) + 15 }}
    - arg:
      - hx_health.passing
      - health_gate
    - kwarg:
        checks: {{ p.get("checks") | json }}
        timeout: {{ p.get("timeout", 60) | json }}
        interval: {{ p.get("interval", 2) | json }}
        allow_warning: {{ p.get("allow_warning", False) | json }}
