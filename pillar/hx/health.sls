# hx_health: thresholds, checks, SLA targets and history size.
# Reference: docs/reference/hx_health.md.  Every key below is optional; the
# values shown are the built-in defaults unless marked "example".
hx:
  health:
    # Two tiers per metric.  Boundary rule: a value EQUAL to a threshold
    # breaches it (cpu 80 is critical).  null disables a tier.  A partial
    # override (e.g. only cpu critical) keeps the other defaults; warning
    # must not exceed critical.
    thresholds:
      cpu: {warning: 60, critical: 80}          # % busy, 0.2 s sample
      memory: {warning: 70, critical: 85}       # % used
      disk: {warning: 80, critical: 90}         # % used, every real writable mount
      load: {warning: 3.0, critical: 5.0}       # 1-minute load average (absolute)
      response_time: {warning: null, critical: 2000}   # ms, default for http checks

    # Checks run by `hx_health.check` and gated on by `hx_health.passing`.
    # With no list at all, a single `system` check runs.  Names: letters,
    # digits, '_', '.', '-' (they appear in event tags and result keys).
    checks:
      - name: system              # -> results system:cpu, system:memory,
        kind: system              #    system:disk:<mount>, system:load
        # thresholds: {cpu: {critical: 95}}      # example: per-check override

      - name: app_http            # example
        kind: http
        url: http://127.0.0.1:8080/health
        timeout: 2                # s, > 0 and <= 60 (default 3); covers connect+body
        expect_status: 200        # int or list, e.g. [200, 204]
        body_match: '"status": ?"ok"'    # optional regex (re.search)
        warning_ms: 1000          # optional
        critical_ms: 2000         # default 2000
        # verify_ssl: true        # https certificate verification

      - name: master_port         # example
        kind: tcp
        host: 127.0.0.1
        port: 4506
        timeout: 2

      - name: sshd                # example
        kind: process
        pattern: sshd             # regex on the command line ...
        # process_name: sshd      # ... or the exact process name (one of the two)
        min_count: 1              # zombies never count

    # SLA targets for `hx_health.sla` (met at equality).
    sla:
      window_days: 30
      availability: 99.9          # % of samples up, per service check
      response_time_ms: 1000      # mean latency of http checks
      error_rate: 1.0             # % of http samples critical

    # History: <minion cachedir>/hx/health_history.jsonl, one line per
    # hx_health.check call; trimmed to the newest max_samples lines.
    history:
      max_samples: 20000
