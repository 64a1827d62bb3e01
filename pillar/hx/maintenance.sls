# hx_maint / hx_patch: maintenance windows, change freezes, the scheduled
# highstate and the patching policy.  Reference: docs/reference/hx_maint.md and
# docs/reference/hx_patch.md; runbook: docs/operations/maintenance.md.
# Every key is optional; values shown are the built-in defaults unless marked
# "example".
hx:
  maintenance:
    # false: the gate is always open (windows AND blackouts ignored).
    enforce: true

    # Without any window: one window "default", 02:00-06:00 UTC, every day.
    # Start inclusive, end exclusive (01:59 refused, 02:00 allowed, 05:59
    # allowed, 06:00 refused).  QUOTE the times: YAML reads 22:00 as a number.
    windows:
      - name: default
        start: "02:00"
        end: "06:00"
        tz: UTC                   # zoneinfo name, e.g. Europe/Berlin
        days: [mon, tue, wed, thu, fri, sat, sun]

      # - name: weekend-night     # example: crosses midnight; days = the START day
      #   start: "22:00"
      #   end: "04:00"
      #   tz: Europe/Berlin
      #   days: [sat, sun]

    # Change freezes: a date vetoes every window occurrence touching it (in
    # the window's zone).  Ranges are inclusive.
    blackouts: []
    #  - 2024-12-24                                           # example
    #  - {from: 2024-12-27, to: 2025-01-02, reason: year-end freeze}

    # The hx_highstate schedule job put in place by `state.apply hx.maintenance`.
    # It calls hx_maint.highstate, which runs state.highstate only inside a
    # window.  Cron is the minion's local time.
    schedule:
      cron: "0 3 * * *"           # or when / once / seconds|minutes|hours (+ range)
      splay: 600                  # random delay up to 10 minutes
      maxrunning: 1
      enabled: true
      # test: true                # example: only report drift (highstate test=True)

  patching:
    exclude: []                   # skipped by hx_patch.apply, e.g. ["linux-image-*"]
    hold: []                      # pkg.hold'ed by hx_patch.apply, e.g. [postgresql-15]
    auto_reboot: false            # false: report a required reboot only
    reboot_delay_minutes: 5       # auto_reboot: shutdown -r in N minutes

# Window open/close events (hx/maint/<minion>/window/open|close):
# beacons:
#   hx_maint:
#     - interval: 30
