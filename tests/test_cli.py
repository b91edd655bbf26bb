"""The `graphrnn` command: version, summary and show, on saved files and module:function."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.cli import SUBCOMMANDS, main

MODEL_SOURCE = textwrap.dedent("""
    import graphrnn as gr
    from graphrnn import nn

    def build():
        x = gr.Input("B", "T", 2, name="x")
        return gr.gModule([x], [nn.Recurrent(gr.cells.GRU(2, 3))(x)], name="from_code")

    def not_a_model():
        return 42
""")


def run(*args: str, cwd=None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphrnn", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=120)


@pytest.fixture
def saved(tmp_path):
    x = gr.Input("B", "T", 3, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(3, 4))(x)], name="saved_lstm")
    path = tmp_path / "lstm.grnn"
    gr.save(model, path)
    return model, path


def test_version():
    done = run("--version")
    assert done.returncode == 0 and done.stdout == f"graphrnn {gr.__version__}\n"
    assert gr.__version__ == "0.1.0"


def test_summary_of_a_saved_file(saved):
    model, path = saved
    done = run("summary", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('Model "saved_lstm" (gModule)')
    assert f"Total parameters: {model.param_count():,}" in done.stdout


def test_a_missing_or_broken_file_is_one_line_and_status_2(tmp_path):
    done = run("summary", str(tmp_path / "missing.grnn"))
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "missing.grnn" in done.stderr
    assert "no such file" in done.stderr
    broken = tmp_path / "broken.grnn"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    done = run("show", str(broken))
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "damaged model file" in done.stderr


def test_module_function_on_pythonpath(tmp_path):
    (tmp_path / "mymodels.py").write_text(MODEL_SOURCE)
    done = run("summary", "mymodels:build", cwd="/", env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('Model "from_code" (gModule)')


def test_file_function_and_errors_in_process(tmp_path, capsys):
    source = tmp_path / "models_file.py"
    source.write_text(MODEL_SOURCE)
    assert main(["show", f"{source}:build", "-o", str(tmp_path / "g.dot")]) == 0
    assert (tmp_path / "g.dot").read_text().startswith('digraph "from_code" {')
    assert main(["show", f"{source}:build", "--unroll", "2"]) == 0
    assert "cluster_loop_0_t1" in capsys.readouterr().out
    for argv, message in [
        (["summary", f"{source}:not_a_model"], "object of type int, expected a gModule"),
        (["summary", f"{source}:nothing"], "has no attribute 'nothing'"),
        (["summary", "no_such_module_here:build"], "no module named"),
        (["summary", str(tmp_path / "nope.py") + ":build"], "no such file"),
        (["show", f"{source}:build", "-o", str(tmp_path / "g.svg")], "DOT text"),
        (["summary", str(tmp_path)], "not a file"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and message in err, (argv, err)


def test_every_subcommand_has_help(capsys):
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as stop:
            main([name, "--help"])
        assert stop.value.code == 0
        assert f"usage: graphrnn {name}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main([])
    assert stop.value.code == 2
