"""hx_audit.config_layers: the master-only hx_ops.yaml, parsed again whenever it changed."""
import os
import time

import pytest

import hx_audit


def _opts(path):
    return {"hx_config_file": str(path), "hx_incident": {"escalation_timeout": 60}}


def _write(path, text, age):
    """Write ``text`` and date the file ``age`` s back (age 0: just written)."""
    path.write_text(text)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


def test_missing_file_leaves_only_the_master_opts(tmp_path):
    assert hx_audit.config_layers(_opts(tmp_path / "none.yaml"), "hx_incident") == [{"escalation_timeout": 60}, None]


def test_an_edit_counts_on_the_next_call(tmp_path):
    path = tmp_path / "hx_ops.yaml"
    _write(path, "hx_incident: {escalation_timeout: 120}\n", age=100)
    assert hx_audit.config_layers(_opts(path), "hx_incident")[1] == {"escalation_timeout": 120}
    _write(path, "hx_incident: {escalation_timeout: 300}\n", age=50)
    assert hx_audit.config_layers(_opts(path), "hx_incident")[1] == {"escalation_timeout": 300}


def test_same_size_rewrites_within_one_clock_tick_are_both_seen(tmp_path):
    path = tmp_path / "hx_ops.yaml"
    now = time.time()
    path.write_text("hx_incident: {escalation_timeout: 2}\n")
    os.utime(path, (now, now))
    assert hx_audit.config_layers(_opts(path), "hx_incident")[1] == {"escalation_timeout": 2}
    path.write_text("hx_incident: {escalation_timeout: 8}\n")
    os.utime(path, (now, now))  # same size, inode and mtime as the first version
    assert hx_audit.config_layers(_opts(path), "hx_incident")[1] == {"escalation_timeout": 8}


def test_what_a_caller_changes_does_not_stick(tmp_path):
    path = tmp_path / "hx_ops.yaml"
    _write(path, "hx_remediation: {budget: {minion: {max: 5}}}\n", age=100)
    first = hx_audit.config_layers(_opts(path), "hx_remediation")[1]
    first["budget"]["minion"]["max"] = 999
    assert hx_audit.config_layers(_opts(path), "hx_remediation")[1] == {"budget": {"minion": {"max": 5}}}


@pytest.mark.parametrize("text, needle", [
    ("hx_incident: [unclosed\n", "cannot read hx-ops config"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_a_broken_file_is_an_error_naming_it(tmp_path, text, needle):
    path = tmp_path / "hx_ops.yaml"
    _write(path, text, age=100)
    with pytest.raises(ValueError, match=needle) as err:
        hx_audit.config_layers(_opts(path), "hx_incident")
    assert str(path) in str(err.value)
