{#- The two slots (blue, green) of every app this host serves, as supervisord
    programs: one include file per app in hx:supervisord:include_dir (the
    host's supervisord.conf must [include] that folder), then
    `supervisorctl update` when the file changed.

    Each slot runs `hx:apps:<app>:run`, a command template with {slot_dir}
    (the slot link hx_release points at a release), {port}, {address},
    {color} and {app}. Programs never start by themselves and are never
    respawned by supervisord: hx_release/hx_service start them and
    hx_service.recover restarts them under its budget. -#}
{%- set sup = salt["pillar.get"]("hx:supervisord", {}) %}
{%- set services = salt["pillar.get"]("hx:services", {}) %}
{%- for app, a in salt["pillar.get"]("hx:apps", {}) | dictsort %}
{%-   if a.get("run") and sup.get("include_dir") %}
{%-     set root = a.get("root", "/srv/hx/apps") %}
hx_app_{{ app }}_programs:
  file.managed:
    - name: {{ sup.include_dir }}/hx-app-{{ app }}.conf
    - makedirs: true
    - contents: |
        # Managed by Salt (salt://hx/app): the slots of {{ app }}.
{%-     for color, default_port in [("blue", 8080), ("green", 8081)] %}
{%-       set slot = (a.get("slots") or {}).get(color) or {} %}
{%-       set service = slot.get("service", app ~ "-" ~ color) %}
{%-       set stop_timeout = ((services.get(service) or {}).get("stop_timeout", 10)) | int %}
{%-       set command = a.run
            | replace("{slot_dir}", root ~ "/" ~ app ~ "/" ~ color)
            | replace("{port}", slot.get("port", default_port) | string)
            | replace("{address}", a.get("address", "127.0.0.1"))
            | replace("{color}", color)
            | replace("{app}", app) %}
        [program:{{ service }}]
        command={{ command }}
        autostart=false
        autorestart=false
        startretries=0
        startsecs=1
        stopwaitsecs={{ stop_timeout + 5 }}
        redirect_stderr=true
        stdout_logfile={{ sup.get("log_dir", sup.include_dir) }}/{{ service }}.log
{%-     endfor %}

hx_app_{{ app }}_update:
  module.run:
    - supervisord.update:
      - conf_file: {{ sup.conf }}
      - bin_env: {{ sup.get("bin_env") }}
    - onchanges:
      - file: hx_app_{{ app }}_programs
{%-   endif %}
{%- endfor %}
