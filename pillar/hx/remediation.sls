# Remediation and incident policy for a minion (example; reference:
# docs/reference/hx_remediate.md and docs/reference/hx_incident.md).
# The master compiles this pillar for the minion that sent an event; the minion
# can read it but cannot change it. Webhook URLs, routing keys and escalation
# levels do NOT belong here (minions can read their pillar): they live in the
# master's /etc/salt/hx_ops.yaml.
hx:
  role: web                     # role for the "at most X % of a role at once" budget
  remediation:
    enabled: true               # pillar can only switch it off for this minion
    min_status: critical        # warning transitions are recorded, not acted on
    actions:                    # incident type -> action (recover | state | notify)
      service_down: recover     # hx_service.recover <service owning the check>
      endpoint_failure: recover
      process_down: notify
      disk: {action: state, sls: hx.cleanup.disk}
      disk_forecast: notify
      cpu: notify
      memory: notify
      load: notify
    budget:
      minion: {max: 5, window: 3600}   # remediations per minion per window (s)
      role: {max_pct: 50}              # % of a role's minions remediated at once (>= 1)
    stale_ttl: 30               # s an "ok on re-check" verdict absorbs identical events
    recheck_timeout: 15         # s for the master's re-check on the minion
    action_timeout: 180         # s for hx_service.recover / state.apply
  incidents:
    escalation_timeout: 300     # s an escalated incident waits for an ack before the next level
    classification:             # first match wins (these are the defaults)
      - {type: service_down, severity: critical, escalate: true}
      - {type: disk, status: critical, severity: critical, escalate: true}
      - {type: disk, severity: medium, escalate: false}
      - {type: process_down, severity: critical, escalate: true}
      - {type: endpoint_failure, severity: high, escalate: false}
      - {type: cpu, severity: high, escalate: false}
      - {type: memory, severity: high, escalate: false}
      - {type: load, severity: high, escalate: false}
      - {type: disk_forecast, severity: medium, escalate: false}
      - {type: config_error, severity: low, escalate: false}
      - {type: '*', severity: medium, escalate: false}
  cleanup:
    disk:
      dirs: [/tmp, /var/tmp]
      age_days: 7

beacons:
  hx_health:
    - interval: 5
    - for_cycles: 2
    - horizon: 24
    - repeat_every: 60     # s to the first repeat of a failure that holds (0: transitions only)
    - repeat_max: 3600     # s, repeats double up to this
