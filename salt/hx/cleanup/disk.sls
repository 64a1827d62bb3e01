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
# Allowed dirs: /tmp, /var/tmp, /srv/hx/tmp (or below), a subdirectory of
# /var/log; anything else refuses the whole run, naming hx:cleanup:disk:dirs.
#
# Nothing from pillar is rendered here: the hx_cleanup.tidied state reads
# and checks it itself (_states/hx_cleanup.py, _utils/hx_paths.py), so no
# pillar value reaches a shell, a command or this file's YAML.
hx cleanup disk:
  hx_cleanup.tidied: []
