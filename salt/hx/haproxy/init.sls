{#- HAProxy on a load balancer: configuration rendered from pillar hx:apps and
    hx:traffic:haproxy, checked with `haproxy -c` before it replaces the old
    one, started as an hx_service (pillar hx:services:haproxy) and reloaded
    gracefully (hx_traffic.reload: state saved first, SIGUSR2) when it changes.

    Weights already set at runtime are kept: the template takes each server's
    weight from the current configuration (hx_traffic keeps it in step with
    every runtime change), so a highstate never moves traffic. A server seen
    for the first time gets full weight on blue and 0 on green. -#}
{%- set hap = salt["pillar.get"]("hx:traffic:haproxy", {}) %}
{%- set apps = salt["pillar.get"]("hx:apps", {}) %}
{%- set current = salt["hx_traffic.config_weights"]() if salt["file.file_exists"](hap.config) else {} %}

hx_haproxy_state_dir:
  file.directory:
    - name: {{ salt["file.dirname"](hap.state_file) }}
    - makedirs: true

hx_haproxy_config:
  file.managed:
    - name: {{ hap.config }}
    - source: salt://hx/haproxy/haproxy.cfg.jinja
    - template: jinja
    - mode: "0640"
    - makedirs: true
    - check_cmd: {{ salt["hx_traffic.check_command"]() | json }}
    - context:
        hap: {{ hap | json }}
        apps: {{ apps | json }}
        current: {{ current | json }}

hx_haproxy_running:
  hx_service.running:
    - name: haproxy
    - require:
      - file: hx_haproxy_config
      - file: hx_haproxy_state_dir

hx_haproxy_reload:
  module.run:
    - hx_traffic.reload: []
    - onchanges:
      - file: hx_haproxy_config
    - require:
      - hx_service: hx_haproxy_running
