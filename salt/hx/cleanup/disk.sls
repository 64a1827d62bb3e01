# hx.cleanup.disk: remove files older than N days from the configured temp
# directories. Applied by hx_remediate for a disk incident (action `state`),
# or by hand: salt web1 state.apply hx.cleanup.disk test=True
#
# Pillar (docs/reference/hx_remediate.md):
#   hx:
#     cleanup:
#       disk:
#         dirs: [/tmp, /var/tmp]   # default: none (nothing is removed)
#         age_days: 7              # files whose mtime is older than this
#         matches: ['.*']          # optional regexes on the file name
#
# Only regular files and symlinks are removed (directories stay), by mtime so
# reading a file does not keep it alive (atime is often off: noatime).
{%- set cfg = salt['pillar.get']('hx:cleanup:disk', {}, unmask=True) or {} %}
{%- set dirs = cfg.get('dirs', []) %}
{%- set age = cfg.get('age_days', 7) %}
{%- if dirs %}
{%-   for dir in dirs %}
hx cleanup {{ dir }}:
  file.tidied:
    - name: {{ dir | json }}
    - age: {{ age | int }}
    - age_size_only: age
    - time_comparison: mtime
    - rmdirs: false
    - matches: {{ cfg.get('matches', ['.*']) | json }}
    - onlyif: test -d {{ dir | json }}
{%-   endfor %}
{%- else %}
hx cleanup: nothing configured:
  test.succeed_without_changes:
    - comment: "hx:cleanup:disk:dirs is empty; nothing to remove"
{%- endif %}
