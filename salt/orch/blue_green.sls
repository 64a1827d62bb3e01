{#- Blue-green deployment through orchestration: the same arguments as
    `salt-run hx_deploy.blue_green`, given as pillar.

    salt-run state.orchestrate orch.blue_green pillar='{"app": "demo", "version": "1.1.0"}'
    salt-run state.orchestrate orch.blue_green pillar='{"app": "demo", "version": "1.1.0"}' test=True

With test=True the plan (hx_deploy.plan) is computed while rendering and
shown; nothing changes. The runner itself expects every app host and load
balancer to answer, so a down minion fails the deployment. -#}
{%- set args = {"app": pillar.get("app"), "version": pillar.get("version")} %}
{%- for key in ("bake", "keep_warm", "break_lock") %}
{%-   if pillar.get(key) is not none %}{% do args.update({key: pillar.get(key)}) %}{% endif %}
{%- endfor %}
{%- if opts.get("test") %}
{%-   set planned = salt["saltutil.runner"]("hx_deploy.plan", app=args.app, version=args.version) %}
{%-   if planned.get("result") %}
hx_deploy_plan:
  test.show_notification:
    - text: {{ ("would deploy:\n" ~ planned.get("steps", []) | join("\n")) | json }}
{%-   else %}
hx_deploy_plan:
  test.fail_without_changes:
    - comment: {{ planned.get("comment", "hx_deploy.plan failed") | json }}
{%-   endif %}
{%- else %}
hx_deploy_blue_green:
  salt.runner:
    - name: hx_deploy.blue_green
{%-   for key, value in args.items() %}
    - {{ key }}: {{ value | json }}
{%-   endfor %}
{%- endif %}
