"""Plugin discovery: short names, original IMMP paths, dotted paths, third-party entry points."""

import subprocess
import sys
import textwrap

import pytest

import immp
from immp.plugins import Plugins


def test_installed_distributions_register_their_short_names():
    plugins = Plugins()
    assert plugins.resolve("demo", immp.Plug, "x").__name__ == "DemoPlug"
    assert plugins.resolve("immp.plug.dummy.DummyPlug", immp.Plug, "x").__name__ == "DemoPlug"
    assert "immp-plug-demo" in {d.distribution for d in plugins.distributions}


def test_dotted_paths_import_the_class():
    plugins = Plugins(discover=False)
    assert plugins.resolve("immp.ResourceHook", immp.Hook, "x") is immp.ResourceHook


def test_unknown_names_list_what_is_installed():
    with pytest.raises(immp.ConfigError) as info:
        Plugins().resolve("ircc", immp.Plug, "plugs.irc.path")
    assert info.value.path == "plugs.irc.path"
    assert "unknown plug 'ircc' (installed: demo" in info.value.message


def test_a_module_registered_by_hand():
    class Mod:
        @staticmethod
        @immp.hookimpl
        def register_hooks(register):
            register("nothing", immp.Hook)

    plugins = Plugins(discover=False)
    plugins.add(Mod, "local-dist", "1.0")
    assert plugins.resolve("nothing", immp.Hook, "x") is immp.Hook
    assert plugins.name_of(immp.Hook) == "nothing"


def test_a_class_registered_by_path_is_imported_only_when_a_config_uses_it(tmp_path, monkeypatch):
    (tmp_path / "slow_plug.py").write_text("import immp\nclass SlowPlug(immp.Plug):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class Mod:
        @staticmethod
        @immp.hookimpl
        def register_plugs(register):
            register("slow", "slow_plug.SlowPlug", aliases=["old.SlowPlug"])
            register("broken", "slow_plug.Missing")

    plugins = Plugins(discover=False)
    plugins.add(Mod, "slow-dist", "1.0")
    assert "slow_plug" not in sys.modules and plugins.distributions[0].plugs == ["slow", "broken"]
    cls = plugins.resolve("old.SlowPlug", immp.Plug, "plugs.s.path")
    assert cls.__name__ == "SlowPlug" and plugins.resolve("slow", immp.Plug, "x") is cls
    assert plugins.name_of(cls) == "slow"
    with pytest.raises(immp.ConfigError) as info:
        plugins.resolve("broken", immp.Plug, "plugs.b.path")
    assert info.value.path == "plugs.b.path" and "has no 'Missing'" in info.value.message
    sys.modules.pop("slow_plug")


def test_discovery_does_not_import_the_irc_plug():
    # The IRC libraries take ~80 ms to import: a start that does not use IRC must not pay it.
    code = (
        "import sys; from immp.plugins import Plugins; p = Plugins(); "
        "assert 'irc' in p.plugs and 'immp_irc.plug' not in sys.modules, sorted(sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-500:]


THIRD_PARTY = '''
import immp

class ShoutHook(immp.Hook):
    """Upper-cases every message."""

@immp.hookimpl
def register_hooks(register):
    register("shout", ShoutHook)
'''


def make_distribution(folder):
    """A third-party distribution 'immp-hook-shout' as pip would leave it in site-packages."""
    (folder / "immp_shout.py").write_text(THIRD_PARTY)
    info = folder / "immp_hook_shout-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: immp-hook-shout\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[immp]\nshout = immp_shout\n")


def test_a_third_party_distribution_is_found_by_entry_point(tmp_path, immp_exe, clean_env):
    make_distribution(tmp_path)
    clean_env["PYTHONPATH"] = str(tmp_path)
    listing = subprocess.run(
        [immp_exe, "--plugins"], capture_output=True, text=True, env=clean_env, timeout=30
    )
    assert listing.returncode == 0
    assert "immp-hook-shout 1.2\n  hooks: shout" in listing.stdout
    config = tmp_path / "c.yaml"
    config.write_text(
        textwrap.dedent("""
        plugs: {d: {path: demo, config: {interval: null}}}
        hooks: {loud: {path: shout}}
    """)
    )
    check = subprocess.run(
        [immp_exe, "--check", str(config)],
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
    assert "1 hook)" in check.stdout


def test_search_path_section_makes_a_local_module_importable(tmp_path, immp_exe):
    module_dir = tmp_path / "mine"
    module_dir.mkdir()
    (module_dir / "myhooks.py").write_text("import immp\nclass Mine(immp.Hook):\n    pass\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"path: [{module_dir}]\nhooks: {{m: {{path: myhooks.Mine}}}}\n")
    check = subprocess.run(
        [immp_exe, "--check", str(config)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr


def test_python_dash_m_runs_the_same_command(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("plugs: {d: {path: demo}}\n")
    check = subprocess.run(
        [sys.executable, "-m", "immp", "--check", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0 and "OK (1 plug," in check.stdout


# -- pluggy is the dispatcher ------------------------------------------------------------------


class Extra(immp.Hook):
    pass


def test_any_implementation_pluggy_accepts_registers_names():
    order = []

    class Named:
        @staticmethod
        @immp.hookimpl(specname="register_hooks")
        def anything_at_all(register):
            order.append("named")
            register("by-specname", immp.Hook)

    class First:
        @staticmethod
        @immp.hookimpl(tryfirst=True)
        def register_hooks(register):
            order.append("first")
            register("first", Extra)

    class Wrapper:
        @staticmethod
        @immp.hookimpl(wrapper=True)
        def register_hooks(register):
            order.append("wrapper before")
            result = yield
            register("after-the-others", Extra)  # credited to this plugin, too
            order.append("wrapper after")
            return result

    plugins = Plugins(discover=False)
    plugins.add(Named, "named-dist", "1")
    plugins.add(First, "first-dist", "2")
    plugins.add(Wrapper, "wrapper-dist", "3")
    assert order[-4:] == ["wrapper before", "first", "named", "wrapper after"]
    assert plugins.resolve("by-specname", immp.Hook, "x") is immp.Hook
    assert plugins.resolve("after-the-others", immp.Hook, "x") is Extra
    credited = {d.distribution: d.hooks for d in plugins.distributions}
    assert credited == {
        "named-dist": ["by-specname"],
        "first-dist": ["first"],
        "wrapper-dist": ["after-the-others"],
    }


def test_an_object_registered_with_the_manager_itself_counts():
    class Mine:
        @immp.hookimpl
        def register_plugs(self, register):
            register("mine", immp.Plug)

    plugins = Plugins(discover=False)
    plugins.manager.register(Mine())
    plugins.collect()
    assert plugins.resolve("mine", immp.Plug, "x") is immp.Plug
    assert [(d.distribution, d.plugs) for d in plugins.distributions] == [("(local)", ["mine"])]


def test_one_name_from_two_modules_is_an_error_naming_both():
    def module(name):
        class Mod:
            @staticmethod
            @immp.hookimpl
            def register_hooks(register):
                register("shout", immp.Hook)

        Mod.__name__ = name
        return Mod

    plugins = Plugins(discover=False)
    plugins.add(module("a"), "dist-a", "1")
    with pytest.raises(immp.ConfigError) as info:
        plugins.add(module("b"), "dist-b", "1")
    assert str(info.value) == (
        "the hook name 'shout' is registered by both dist-a and dist-b; uninstall one"
    )


def make_distribution_of(folder, dist, module, source, entry="shout"):
    """A distribution ``dist`` (version 1.0) whose entry point ``entry`` is ``module``."""
    (folder / f"{module}.py").write_text(source)
    info = folder / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[immp]\n{entry} = {module}\n")


def _immp(immp_exe, env, *args):
    return subprocess.run([immp_exe, *args], capture_output=True, text=True, env=env, timeout=30)


def test_two_distributions_with_one_short_name_exit_2_naming_both(tmp_path, immp_exe, clean_env):
    make_distribution(tmp_path)  # immp-hook-shout registers 'shout'
    make_distribution_of(tmp_path, "immp-hook-loud", "immp_loud", THIRD_PARTY, entry="loud")
    clean_env["PYTHONPATH"] = str(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("plugs: {d: {path: demo}}\n")
    for args in (["--plugins"], ["--check", str(config)], [str(config)]):
        done = _immp(immp_exe, clean_env, *args)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert "'shout'" in lines[0]
        assert "immp-hook-shout" in lines[0] and "immp-hook-loud" in lines[0]


BROKEN = """
import immp
import a_library_that_is_not_installed

@immp.hookimpl
def register_hooks(register):
    register("fancy", immp.Hook)
"""


def test_a_plugin_that_fails_to_import_is_listed_and_only_breaks_configs_using_it(
    tmp_path, immp_exe, clean_env
):
    make_distribution(tmp_path)  # a working one beside it
    make_distribution_of(tmp_path, "immp-hook-fancy", "immp_fancy", BROKEN, entry="fancy")
    clean_env["PYTHONPATH"] = str(tmp_path)

    listing = _immp(immp_exe, clean_env, "--plugins")
    assert listing.returncode == 0, listing.stderr
    assert "Traceback" not in listing.stdout + listing.stderr
    assert "immp-hook-shout 1.2\n  hooks: shout" in listing.stdout
    assert (
        "immp-hook-fancy 1.0 (broken)\n  fancy = immp_fancy: ModuleNotFoundError: "
        "No module named 'a_library_that_is_not_installed'\n"
    ) in listing.stdout

    unused = tmp_path / "unused.yaml"
    unused.write_text("plugs: {d: {path: demo}}\nhooks: {loud: {path: shout}}\n")
    check = _immp(immp_exe, clean_env, "--check", str(unused))
    assert check.returncode == 0, check.stderr
    [warning] = check.stderr.strip().splitlines()
    assert warning.startswith("immp: warning: plugin distribution immp-hook-fancy 1.0 failed")
    assert "No module named 'a_library_that_is_not_installed'" in warning

    used = tmp_path / "used.yaml"
    used.write_text("plugs: {d: {path: demo}}\nhooks: {f: {path: fancy}}\n")
    for args in (["--check", str(used)], [str(used)]):
        done = _immp(immp_exe, clean_env, *args)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        [error] = done.stderr.strip().splitlines()
        assert error.startswith("immp: error: ") and "hooks.f.path" in error
        assert "immp-hook-fancy" in error and "a_library_that_is_not_installed" in error


def test_immp_plugins_lists_the_store_schemes_a_distribution_registers(immp_exe, clean_env):
    listing = subprocess.run(
        [immp_exe, "--plugins"], capture_output=True, text=True, env=clean_env, timeout=30
    )
    assert listing.returncode == 0, listing.stderr
    assert "immp-store-postgres 0.1.0\n  stores: postgresql, postgres\n" in listing.stdout


def test_two_distributions_registering_one_store_scheme_is_an_error():
    class One:
        @staticmethod
        @immp.hookimpl
        def register_stores(register):
            register("same", immp.MemoryStore)

    class Two(One):
        pass

    plugins = Plugins(discover=False)
    plugins.add(One, "store-one", "1.0")
    with pytest.raises(immp.ConfigError) as info:
        plugins.add(Two, "store-two", "1.0")
    assert "'same' is registered by both store-one and store-two" in info.value.message
