# hx-ops maintenance formula: puts the window-gated scheduled highstate job on
# the minion. Reference: docs/reference/hx_maint.md, runbook:
# docs/operations/maintenance.md.
include:
  - hx.maintenance.schedule
