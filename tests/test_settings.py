import pytest

from archlab.settings import SettingsError, load_settings


def test_defaults_and_flags():
    s = load_settings(None, rounds=3, sandbox__backend="process")
    assert s.task == "mqar" and s.rounds == 3 and s.sandbox.backend == "process"


def test_unknown_task_is_refused_with_the_setting_named():
    with pytest.raises(SettingsError, match="task.*unknown task 'nope'"):
        load_settings(None, task="nope")


def test_negative_budget_is_refused():
    with pytest.raises(SettingsError, match="rounds"):
        load_settings(None, rounds=-1)


def test_bad_backend_name_is_refused():
    with pytest.raises(SettingsError, match="sandbox.backend"):
        load_settings(None, sandbox__backend="vm")


def test_corrupt_config_file_is_refused(tmp_path):
    bad = tmp_path / "lab.toml"
    bad.write_text("rounds = [unclosed\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(bad)
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_config_file_and_environment(tmp_path, monkeypatch):
    cfg = tmp_path / "lab.toml"
    cfg.write_text('rounds = 4\n[sandbox]\nmemory_mb = 1024\n')
    monkeypatch.setenv("ARCHLAB_SEED", "7")
    s = load_settings(cfg, rounds=None)
    assert s.rounds == 4 and s.sandbox.memory_mb == 1024 and s.seed == 7


def test_bad_task_option_is_refused():
    with pytest.raises(SettingsError, match="task_options"):
        load_settings(None, task_options={"seq_len": 10})


def test_offline_engine_refuses_a_task_without_a_search_space():
    with pytest.raises(SettingsError, match="setting 'task'.*offline engine searches a task's declared search space"):
        load_settings(None, task="digits")
