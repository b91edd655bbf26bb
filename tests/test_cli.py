"""The `graphrnn` command: version, summary and show, on saved files and module:function."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

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
        (["show", f"{source}:build", "-o", str(tmp_path / "g.txt")],
         "can write .svg, .png, .dot or .gv files"),
        (["show", f"{source}:build", "--unroll", "0"], "positive number of steps"),
        (["ir", f"{source}:build", "--after", "nope"], "no such pass; the passes are shapes"),
        (["ir", f"{source}:build", "--input-shape", "1,T,2", "--input-shape", "1,T,2"],
         "given 2 times; the model has 1 inputs (x)"),
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


def test_show_writes_pictures(tmp_path):
    source = tmp_path / "models_file.py"
    source.write_text(MODEL_SOURCE)
    svg, png = tmp_path / "g.svg", tmp_path / "g.png"
    assert main(["show", f"{source}:build", "-o", str(svg), "--engine", "builtin"]) == 0
    root = ET.parse(svg).getroot()
    classes = [g.get("class", "") for g in root.iter("{http://www.w3.org/2000/svg}g")]
    assert "cluster loop" in classes and sum("param" in c.split() for c in classes) == 4
    assert main(["show", f"{source}:build", "-o", str(png), "--unroll", "2"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ir_prints_the_graph_after_each_pass(tmp_path, capsys):
    source = tmp_path / "models_file.py"
    source.write_text(MODEL_SOURCE)
    assert main(["ir", f"{source}:build"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# from_code: %x : f32[1,T,2]\n# shapes ")
    assert re.findall(r"^== after (\w+)", out, re.M)[:5] == ["shapes", "reroll", "unroll", "tie",
                                                            "flatten"]
    assert "== after unroll" in out and "unchanged ==" in out
    assert main(["ir", f"{source}:build", "--after", "flatten", "--batch", "4",
                 "--steps", "7"]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"^== after (\w+)", out, re.M) == ["flatten"]
    assert "graph(%x : f32[4,7,2], %params : f32[" in out
    assert re.search(r"= view\(%params, offset=\d+, shape=\(9, 2\)\)", out)
    assert "param()" not in out.split("== after flatten")[1]
    assert main(["ir", f"{source}:build", "--after", "shapes", "--input-shape", "2,5,2"]) == 0
    assert "graph(%x : f32[2,5,2]) {" in capsys.readouterr().out


def test_ir_llvm_and_assembly_of_the_forward_kernel(tmp_path, capsys):
    source = tmp_path / "models_file.py"
    source.write_text(MODEL_SOURCE)
    done = run("ir", f"{source}:build", "--llvm")
    assert done.returncode == 0, done.stderr
    assert re.search(r'^define void @"graphrnn_[0-9a-f]{8}_forward"', done.stdout, re.M)
    assert main(["ir", f"{source}:build", "--asm"]) == 0
    assert re.search(r"^graphrnn_[0-9a-f]{8}_forward:$", capsys.readouterr().out, re.M)
