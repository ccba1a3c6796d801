"""Config errors that the corpus in tests/faults/configs cannot hold (it holds files)."""

import pytest


@pytest.mark.parametrize("name", ["conf", "conf.yaml"])
def test_a_folder_as_the_config_file_is_one_clear_line(tmp_path, name, immp_command, clean_env):
    folder = tmp_path / name
    folder.mkdir()
    for args in (["--check", str(folder)], [str(folder)]):
        result = immp_command(*args, env=clean_env)
        assert result.returncode == 2
        assert result.stderr == f"immp: error: {folder}: is a folder, not a config file\n"
        assert result.stdout == ""
