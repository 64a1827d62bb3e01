{#- Canary deployment through orchestration: the same arguments as
    `salt-run hx_deploy.canary`, given as pillar.

    salt-run state.orchestrate orch.canary pillar='{"app": "demo", "version": "1.1.0"}'
    salt-run state.orchestrate orch.canary pillar='{"app": "demo", "version": "1.1.0", "steps": [10, 50, 100], "step_interval": 120}'
    salt-run state.orchestrate orch.canary pillar='{"app": "demo", "version": "1.1.0", "canary_traffic_percentage": 20, "canary_monitoring_time": 900}'
    salt-run state.orchestrate orch.canary pillar='{"app": "demo", "version": "1.1.0"}' test=True

With test=True the plan (hx_deploy.plan strategy=canary) is computed while
rendering and shown; nothing changes. A failed or rolled-back canary fails
the orchestration; a paused one succeeds with outcome `paused` (continue it
with `salt-run hx_deploy.resume app=<app>`). -#}
{%- set args = {"app": pillar.get("app"), "version": pillar.get("version")} %}
{%- for key in ("steps", "step_interval", "sample_interval", "error_rate", "response_time", "error_margin",
                "latency_ratio", "latency_floor", "success_threshold", "min_requests", "inconclusive",
                "max_repeats", "canary_traffic_percentage", "canary_monitoring_time", "keep_warm", "break_lock") %}
{%-   if pillar.get(key) is not none %}{% do args.update({key: pillar.get(key)}) %}{% endif %}
{%- endfor %}
{%- if opts.get("test") %}
{%-   set plan_args = {} %}
{%-   for key, value in args.items() %}{% if key != "break_lock" %}{% do plan_args.update({key: value}) %}{% endif %}{% endfor %}
{%-   set planned = salt["saltutil.runner"]("hx_deploy.plan", strategy="canary", **plan_args) %}
{%-   if planned.get("result") %}
hx_deploy_plan:
  test.show_notification:
    - text: {{ ("would deploy a canary:\n" ~ planned.get("steps", []) | join("\n")) | json }}
{%-   else %}
hx_deploy_plan:
  test.fail_without_changes:
    - comment: {{ planned.get("comment", "hx_deploy.plan failed") | json }}
{%-   endif %}
{%- else %}
hx_deploy_canary:
  salt.runner:
    - name: hx_deploy.canary
{%-   for key, value in args.items() %}
    - {{ key }}: {{ value | json }}
{%-   endfor %}
{%- endif %}
