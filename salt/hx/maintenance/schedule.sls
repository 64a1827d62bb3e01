{#- The hx_highstate schedule job, timed by pillar hx:maintenance:schedule.
    The job calls hx_maint.highstate, which runs state.highstate only when
    hx_maint.window_open says the window is open and returns a skip result
    otherwise, so a cron time outside the window (or a minion clock in
    another zone) can never start maintenance outside it.
    hx_maint.schedule_job validates the pillar: a bad key fails the render
    with the key named. #}
{%- set job = salt['hx_maint.schedule_job']() %}

hx_highstate:
  schedule.present:
{%- for key, value in job | dictsort %}
    - {{ key }}: {{ value | json }}
{%- endfor %}
