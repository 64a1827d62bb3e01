{#- Rolling maintenance through orchestration: the same arguments as
    `salt-run hx_maint.run`, given as pillar.

    salt-run state.orchestrate orch.maintenance pillar='{"tgt": "app*", "batch": 1}'
    salt-run state.orchestrate orch.maintenance pillar='{"tgt": "app*", "batch": 1}' test=True

With test=True the plan (hx_maint.plan) is computed while rendering and
shown; nothing changes. A plan that would be refused (window closed, no
recent backup, lock held, a batch that would leave an app without a live
server) fails the dry run with the reasons. -#}
{%- set args = {"tgt": pillar.get("tgt")} %}
{%- for key in ("tgt_type", "batch", "emergency", "max_fail_percentage", "security_only", "reboot", "services",
                "break_lock") %}
{%-   if pillar.get(key) is not none %}{% do args.update({key: pillar.get(key)}) %}{% endif %}
{%- endfor %}
{%- if opts.get("test") %}
{%-   set plan_args = {} %}
{%-   for key, value in args.items() if key not in ("max_fail_percentage", "break_lock") %}
{%-     do plan_args.update({key: value}) %}
{%-   endfor %}
{%-   set planned = salt["saltutil.runner"]("hx_maint.plan", **plan_args) %}
{%-   if planned.get("result") %}
hx_maint_plan:
  test.show_notification:
    - text: {{ ("would run maintenance:\n" ~ planned.get("steps", []) | join("\n")) | json }}
{%-   else %}
hx_maint_plan:
  test.fail_without_changes:
    - comment: {{ ("maintenance would be refused:\n" ~ (planned.get("refusals") or [planned.get("comment", "hx_maint.plan failed")]) | join("\n")) | json }}
{%-   endif %}
{%- else %}
hx_maint_run:
  salt.runner:
    - name: hx_maint.run
{%-   for key, value in args.items() %}
    - {{ key }}: {{ value | json }}
{%-   endfor %}
{%- endif %}
