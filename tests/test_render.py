"""Drawings: golden DOT for every example, the files `dot` makes, broken specs, repeats, escaping."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import networkx as nx
import pytest
from conftest import EXAMPLES, ROOT
from hypothesis import HealthCheck, given, settings
from strategies import mutations, programs

import netdsl
from netdsl.cli import main
from netdsl.render import GraphvizMissing, plot, to_dot

LENET = str(ROOT / "examples" / "lenet5.net")
RESNET = str(ROOT / "examples" / "resnet.net")
SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")

BROKEN = """\
# broken on purpose: no flatten before dense
input 28x28x1
conv 6x5 relu
maxpool 2/2
dense 120 relu
dense 10 softmax
"""


def svg_texts(data: bytes | str) -> list[str]:
    root = ET.fromstring(data)
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def node_line(dot: str, name: str) -> str:
    """The node's statement, its label's line breaks read as spaces (long errors wrap)."""
    line = next(line for line in dot.splitlines() if line.strip().startswith(f'"{name}" ['))
    return line.replace("<br/>", " ")


def drawn_nodes(dot: str) -> set[str]:
    return set(re.findall(r'^\s*"([^"]+)" \[label=', dot, re.M))


def edges(dot: str) -> list[tuple[str, str, str]]:
    """(tail, head, label) of every edge; the label is "" for an unlabelled edge."""
    out = []
    for u, v, attrs in re.findall(r'^\s*"([^"]+)" -> "([^"]+)"(?: \[(.*)\])?$', dot, re.M):
        m = re.search(r"label=<([^>]*)>", attrs)
        out.append((u, v, m.group(1) if m else ""))
    return out


def stats(layer) -> str:
    """What a node shows under its name: the shape, and the parameters when there are any."""
    shape = "\u00d7".join(map(str, layer.output_shape[1:]))
    return f"{shape} \u00b7 {layer.params:,} params" if layer.params else shape


# ---- DOT text (no Graphviz needed) ----------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_golden_dot(path, golden):
    golden(f"{path.stem}.dot", to_dot(netdsl.load(path)))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_dot_has_every_layer_and_edge(path):
    net = netdsl.load(path)
    dot = to_dot(net, expand=True, compact=False)
    assert dot == to_dot(net, expand=True, compact=False)  # deterministic
    assert drawn_nodes(dot) == set(net.graph.nodes)
    for layer in net.layers:
        assert f">{stats(layer)}" in node_line(dot, layer.name)
        if not layer.params:
            assert "params" not in node_line(dot, layer.name).split("tooltip=")[0]  # no "0 params"
    want = sorted((u, v) for v in net.graph.nodes for u in net.graph.nodes[v]["inputs"])
    assert sorted((u, v) for u, v, _ in edges(dot)) == want
    assert all(label == "" for *_, label in edges(dot))  # the shapes are on the nodes, once
    total = (
        f"{net.total_params:,} params: {net.trainable_params:,} trainable, {net.non_trainable_params:,} non-trainable"
    )
    assert total in dot and f"{net.total_macs:,} MACs" in dot


def test_node_shows_op_arguments_and_graph_label():
    dot = netdsl.load(LENET).to_dot()
    line = node_line(dot, "conv_1")
    assert "<b>conv_1</b>" in line and "conv 6\u00d75 sigmoid" in line and "24\u00d724\u00d76 \u00b7 156 params" in line
    labels = [line.split("tooltip=")[0] for line in dot.splitlines() if "[label=" in line]
    assert not [x for x in labels if " /1" in x or ">0 params" in x or " 0 params" in x]
    assert "conv 64\u00d71 /2" in netdsl.load(RESNET).to_dot()  # a stride that is not 1 shows
    assert "input 28\u00d728\u00d71 \u2192 output 10" in dot
    assert "44,426 params: 44,426 trainable, 0 non-trainable \u00b7 281,640 MACs" in dot
    assert "(64 non-trainable)" in node_line(netdsl.load(RESNET).to_dot(compact=False), "batchnorm_1")


def test_families_look_different():
    net = netdsl.parse(
        "conv 8x3 relu same; batchnorm; relu; dropout 0.1; maxpool 2; add {conv 8x1 | identity}; flatten; dense 3"
    )
    dot = net.to_dot()
    looks = {}
    for name in ("conv_1", "batchnorm_1", "relu_1", "dropout_1", "maxpool_1", "add_1", "flatten_1", "dense_1"):
        line = node_line(dot, name)
        fill = re.search(r'fillcolor="#(\w+)"', line).group(1)
        outline = re.search(r"shape=\w+, style=(\"[^\"]*\"|\w+)(, peripheries=2)?", line).group(0)
        looks[name] = (fill, outline)
    assert len({outline for _, outline in looks.values()}) == len(looks)  # told apart printed in grey

    def grey(fill: str) -> float:
        r, g, b = (int(fill[i : i + 2], 16) for i in (0, 2, 4))
        return (0.299 * r + 0.587 * g + 0.114 * b) / 255

    greys = sorted(grey(fill) for fill, _ in looks.values())
    assert greys[0] >= 0.55  # dark text stays readable on the darkest fill
    assert len({round(g, 2) for g in greys}) == len(greys)


def test_clusters_nest_as_the_groups_do():
    dot = netdsl.load(ROOT / "examples" / "inception.net").to_dot()
    assert dot.count("subgraph ") == sum(1 for _ in re.finditer(r'subgraph "cluster_g\d+"', dot))
    assert "<b>inception(16, 16, 24, 4, 8)</b>" in dot and "<b>concat</b> { \u2026 | \u2026 | \u2026 | \u2026 }" in dot
    # conv_6 sits in path g7, inside concat g6, inside the call g5
    opened = []
    for line in dot.splitlines():
        m = re.match(r'\s*subgraph "cluster_(g\d+)"', line)
        if m:
            opened.append(m.group(1))
        elif line.strip() == "}" and opened:
            opened.pop()
        elif line.strip().startswith('"conv_6" ['):
            assert opened == ["g5", "g6", "g7"]
            break
    else:
        pytest.fail("conv_6 not drawn")
    assert "<b>residual</b>" in netdsl.load(RESNET).to_dot()


def test_rankdir():
    net = netdsl.load(LENET)
    assert "rankdir=LR" in net.to_dot(rankdir="LR") and "rankdir=TB" in net.to_dot()
    with pytest.raises(ValueError, match="TB or LR"):
        to_dot(net, rankdir="XY")


def test_graph_without_net_and_bad_arguments():
    g = netdsl.load(LENET).graph
    assert to_dot(g).startswith("digraph netdsl {")
    with pytest.raises(TypeError):
        to_dot("conv 6x5")
    try:
        netdsl.parse("conv 6x5; dense {")
    except netdsl.NetdslError as e:
        with pytest.raises(ValueError, match="no graph"):
            to_dot(e)


# ---- repeat: drawn once unless expanded ---------------------------------------------------


def test_repeat_drawn_once_and_expanded():
    net = netdsl.load(RESNET)
    folded, full = net.to_dot(compact=False), net.to_dot(expand=True, compact=False)
    assert {"conv_2", "relu_2"} <= drawn_nodes(folded)
    assert not {"conv_4", "add_2", "relu_4"} & drawn_nodes(folded)
    assert "<b>repeat \u00d72</b> (drawn once) \u00b7 37,504 params" in folded
    pairs = {(u, v): label for u, v, label in edges(folded)}
    # the last pass continues: the edge leaves the repeat's box, naming the node it comes from
    assert pairs[("relu_2", "conv_6")] == pairs[("relu_2", "conv_8")] == "from relu_4"
    for head in ("conv_6", "conv_8"):
        assert f'"relu_2" -> "{head}" [ltail="cluster_g1", label=<from relu_4>]' in folded
    assert "compound=true" in folded
    assert ("relu_2", "conv_4") not in pairs
    assert drawn_nodes(full) == set(net.graph.nodes)
    assert "pass 2" in full and "(drawn once)" not in full
    assert ("relu_4", "conv_6") in {(u, v) for u, v, _ in edges(full)}


def test_folded_repeat_edge_carries_the_last_pass_shape():
    net = netdsl.parse("input 16x16x1\nrepeat 3 { conv 4x3 }\nflatten\ndense 2")
    dot = net.to_dot()
    assert drawn_nodes(dot) == {"input", "conv_1", "flatten_1", "dense_1"}
    assert ("conv_1", "flatten_1", "from conv_3: 10\u00d710\u00d74") in edges(dot)
    assert node_line(dot, "conv_1").count("14\u00d714\u00d74") == 1  # pass 1's own shape


def test_nested_repeats_fold_to_one_layer():
    net = netdsl.parse("input 8\nrepeat 2 { repeat 3 { dense 4 } }\ndense 2")
    dot = net.to_dot()
    assert drawn_nodes(dot) == {"input", "dense_1", "dense_7"}
    assert {(u, v) for u, v, _ in edges(dot)} == {("input", "dense_1"), ("dense_1", "dense_7")}
    assert len(drawn_nodes(net.to_dot(expand=True))) == 8


def test_repeat_failing_in_a_later_pass_is_drawn_whole():
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.parse("input 12x12x1\nrepeat 3 { conv 8x5 }\nflatten; dense 10")
    dot = to_dot(info.value)
    assert {"conv_1", "conv_2", "conv_3"} <= drawn_nodes(dot)
    assert "penwidth=3" in node_line(dot, "conv_3") and "does not fit the 4x4 input" in node_line(dot, "conv_3")


# ---- broken specs ---------------------------------------------------------------------


def test_error_drawing_highlights_the_failing_layer():
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.parse(BROKEN, filename="broken.net")
    dot = to_dot(info.value)
    bad = node_line(dot, "dense_1")
    assert 'color="#c00000", penwidth=3' in bad
    assert "error[E201]: dense needs a vector, got a" in bad and "hint: insert `flatten` (or `gap`)" in bad
    assert "dashed" in node_line(dot, "dense_2") and "? \u00b7 ? params" in node_line(dot, "dense_2")
    assert "penwidth" not in node_line(dot, "conv_1")
    assert '"14">broken</font>' in dot and "1 error" in dot and "output ?" in dot


def test_error_without_a_node_goes_in_the_title():
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.parse("conv 6x5 relu\nfrom nothere\nflatten\ndense 10")
    dot = to_dot(info.value)
    assert "line 2: error[E108]: no layer named `nothere`" in dot


@needs_dot
def test_cli_broken_spec_draws_then_fails(tmp_path, capsys, monkeypatch):
    (tmp_path / "specs").mkdir()
    spec = tmp_path / "specs" / "broken.net"
    spec.write_text(BROKEN)
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(spec)]) == 1  # default output: broken.svg in the current directory
    err = capsys.readouterr().err
    assert f"{spec}:5:1: error[E201]: dense needs a vector" in err and "drawn up to the error" in err
    assert "wrote broken.svg" in err and sorted(p.name for p in (tmp_path / "specs").iterdir()) == ["broken.net"]
    texts = svg_texts((tmp_path / "broken.svg").read_bytes())
    assert "dense_1" in texts and any("error[E201]" in t for t in texts)
    assert "Traceback" not in err


def test_cli_syntax_error_writes_nothing(tmp_path, capsys):
    spec = tmp_path / "bad.net"
    spec.write_text("conv 6x5 relu; dense {\n")
    assert main(["plot", str(spec), "-o", str(tmp_path / "bad.dot")]) == 1
    assert "error[E002]" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.net"]


# ---- escaping -------------------------------------------------------------------------

WEIRD = 'we"ird\\ <b>&amp; \u00fc\u00d7\U0001f600 \\n \\N \\G }];{'
MESSAGE = 'bad `x` "quoted" \\ back <tag> & more \\\\ \\" end\\'


def weird_graph():
    g = netdsl.parse("conv 6x5 relu; flatten; dense 10").graph.copy()
    nx.relabel_nodes(g, {"dense_1": WEIRD}, copy=False)
    g.nodes[WEIRD].update(error=MESSAGE, shape=None, inputs=["flatten_1"])
    return g


def test_escaping_keeps_the_dot_syntax():
    dot = to_dot(weird_graph())
    # every quoted string closes on its line and no HTML label leaks a raw < > or quote
    for line in dot.splitlines():
        stripped = re.sub(r'"(\\.|[^"\\])*"', "Q", line)
        assert '"' not in stripped, line
    assert "&lt;tag&gt; &amp; more \\\\\\\\ \\\\&quot; end" in dot.replace("<br/>", " ")


@needs_dot
def test_escaping_survives_graphviz():
    from netdsl.render import render

    svg = render(to_dot(weird_graph()), "svg")
    texts = svg_texts(svg)
    assert WEIRD in texts
    tips = [a.get("{http://www.w3.org/1999/xlink}title") for a in ET.fromstring(svg).iter(f"{SVG}a")]
    assert WEIRD.replace("\\", "\u29f5") + ": Dense, line 1" in tips  # \N stays text in a tooltip too
    assert f"error: {MESSAGE}" in " ".join(texts)


@needs_dot
def test_real_error_messages_with_backticks_render(tmp_path):
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.parse("conv 6x5 relu; dense 10 foo")
    plot(info.value, tmp_path / "e.svg")
    assert "error[E105]: `foo` is not an argument of dense" in " ".join(svg_texts((tmp_path / "e.svg").read_bytes()))


# ---- files through Graphviz ----------------------------------------------------------------


@needs_dot
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_svg_shows_every_node(path, tmp_path):
    net = netdsl.load(path)
    out = plot(net, tmp_path / "net.svg", expand=True, compact=False)
    texts = svg_texts(out.read_bytes())
    for layer in net.layers:
        assert layer.name in texts
        assert any(t.startswith(stats(layer)) for t in texts), layer.name
    assert "input" in texts


@needs_dot
@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG\r\n\x1a\n"), ("pdf", b"%PDF-"), ("svg", b"<?xml")])
def test_cli_writes_each_format(fmt, magic, tmp_path, capsys):
    out = tmp_path / f"lenet.{fmt}"
    assert main(["plot", LENET, "-o", str(out), "--rankdir", "lr"]) == 0
    assert out.read_bytes().startswith(magic)
    assert capsys.readouterr().err == f"wrote {out}\n"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left behind


def test_cli_dot_and_stdout(tmp_path, capsys, monkeypatch):
    out = tmp_path / "lenet.dot"
    assert main(["plot", LENET, "-o", str(out), "--expand"]) == 0
    assert out.read_text(encoding="utf-8") == to_dot(netdsl.load(LENET), expand=True)
    capsys.readouterr()
    assert main(["plot", LENET, "-o", "-"]) == 0
    assert capsys.readouterr().out == netdsl.load(LENET).to_dot()


def test_cli_usage_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plot", "-"]) == 2
    assert "needs -o" in capsys.readouterr().err
    assert main(["plot", LENET, "-o", str(tmp_path / "x.jpg")]) == 2
    assert ".svg, .png, .pdf or .dot" in capsys.readouterr().err
    assert main(["plot", LENET, "--rankdir", "XY"]) == 2
    spec = tmp_path / "weird.svg"
    spec.write_text("dense 3")
    assert main(["plot", str(spec)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err and spec.read_text() == "dense 3"


def test_without_graphviz(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    png = tmp_path / "lenet.png"
    png.write_bytes(b"old")
    assert main(["plot", LENET, "-o", str(png)]) == 1
    err = capsys.readouterr().err
    for hint in ("apt-get install graphviz", "brew install graphviz", "conda install -c conda-forge graphviz"):
        assert hint in err
    assert "Traceback" not in err and png.read_bytes() == b"old"
    assert main(["plot", LENET, "-o", str(tmp_path / "lenet.dot")]) == 0
    assert (tmp_path / "lenet.dot").read_text(encoding="utf-8").startswith("digraph netdsl {")
    net = netdsl.load(LENET)
    assert net._repr_svg_() is None
    with pytest.raises(GraphvizMissing, match="brew install graphviz"):
        net.plot(tmp_path / "x.svg")


# ---- Python API and notebooks --------------------------------------------------------------


def test_plot_api(tmp_path):
    net = netdsl.load(LENET)
    assert net.plot(tmp_path / "a.dot") == tmp_path / "a.dot"
    assert plot(net, tmp_path / "noext", format="dot").read_text(encoding="utf-8") == net.to_dot()
    with pytest.raises(ValueError, match="cannot tell the format"):
        net.plot(tmp_path / "a.gif")


@needs_dot
def test_repr_svg():
    svg = netdsl.load(LENET)._repr_svg_()
    assert "conv_1" in svg_texts(svg.encode())


def test_repr_html_is_escaped_table():
    net = netdsl.parse("conv 6x5 relu; flatten; dense 10", filename="<b>&.net")
    html = net._repr_html_()
    assert html.startswith("<table") and "Model: &quot;&lt;b&gt;&amp;&quot;" in html and "<b>&" not in html
    assert "<td>conv_1 (Conv2D)</td><td>(None, 24, 24, 6)</td><td>156</td>" in html
    assert f"Total params: {net.total_params:,}" in html
    ET.fromstring(html)  # well formed


# ---- random programs ----------------------------------------------------------------------


def dot_parses(dot: str) -> None:
    if shutil.which("dot"):
        proc = subprocess.run(["dot", "-Tcanon"], input=dot.encode(), capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs())
def test_random_programs_draw(prog):
    net = netdsl.parse(prog.text, **prog.params)
    full, folded = net.to_dot(expand=True), net.to_dot()
    assert drawn_nodes(full) == set(net.graph.nodes)
    shown = drawn_nodes(folded)
    assert (
        shown <= set(net.graph.nodes) and {u for u, v, _ in edges(folded)} | {v for _, v, _ in edges(folded)} <= shown
    )
    if net.graph.graph["output"] not in shown:  # the output folded into a repeat's first pass
        assert "(drawn once)" in folded
    dot_parses(folded)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutations())
def test_random_broken_programs_draw(mut):
    try:
        netdsl.parse(mut.text, **mut.params)
    except netdsl.NetdslError as e:
        if e.graph is None:
            return
        dot = to_dot(e)
        for v in drawn_nodes(dot):
            if e.graph.nodes[v]["error"]:
                assert "penwidth=3" in node_line(dot, v)
        dot_parses(dot)


# ---- staying light ------------------------------------------------------------------------

PROBE = """
import contextlib, io, sys
from netdsl.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    {body}
print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras', 'jax', 'graphviz')
             or m == 'netdsl.render'))
"""


def probe(body: str) -> str:
    code = PROBE.format(body=body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_check_and_summary_do_not_load_the_renderer():
    assert probe("main(['check', 'examples/lenet5.net']); main(['summary', 'examples/resnet.net'])") == "[]"


def test_plot_imports_no_framework(tmp_path):
    out = tmp_path / "x.dot"
    assert probe(f"assert main(['plot', 'examples/resnet.net', '-o', {str(out)!r}]) == 0") == "['netdsl.render']"


@pytest.mark.slow
@needs_dot
def test_installed_program(tmp_path):
    exe = shutil.which("netdsl", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("netdsl is not installed next to this python")
    proc = subprocess.run(
        [exe, "plot", LENET, "-o", str(tmp_path / "l.svg")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "conv_1" in svg_texts((tmp_path / "l.svg").read_bytes())


# ---- compaction and long specs --------------------------------------------------------------


def test_deep_nets_fold_activation_chains():
    net = netdsl.load(RESNET)
    full, compact = net.to_dot(compact=False), net.to_dot()  # resnet draws > 30 boxes: compact by default
    assert len(drawn_nodes(compact)) <= 0.65 * len(drawn_nodes(full))
    line = node_line(compact, "conv_2")
    assert "+ batchnorm + relu" in line and "9,376 params (64 non-trainable)" in line  # conv + batchnorm
    assert "(with batchnorm_1, relu_1)" in line  # the tooltip names what was folded
    assert not {"batchnorm_1", "relu_1"} & drawn_nodes(compact)
    # every drawn edge joins drawn boxes, and the folded chain's reader is fed from its box
    assert {u for u, _, _ in edges(compact)} | {v for _, v, _ in edges(compact)} <= drawn_nodes(compact)
    assert ("conv_2", "conv_3", "") in edges(compact)
    dot_parses(compact)


def test_compaction_keeps_what_is_read_twice_and_block_borders():
    net = netdsl.parse("input 8x8x3\na: conv 8x3 same\nrelu\nadd a\nresidual { conv 8x1; batchnorm }\nbatchnorm")
    dot = net.to_dot(compact=True)
    assert drawn_nodes(dot) == {"input", "a", "relu_1", "add_1", "conv_1", "add_2", "batchnorm_2"}  # a is read twice
    assert "+ batchnorm" in node_line(dot, "conv_1")  # folded into conv_1, inside the residual box
    assert "batchnorm_2" in drawn_nodes(dot)  # outside the box: stays a box of its own
    small = netdsl.load(LENET)
    assert small.to_dot() == small.to_dot(compact=False)  # small nets are drawn whole by default


def test_def_clusters_show_their_call():
    dot = netdsl.load(RESNET).to_dot()
    assert "<b>block(width)</b>" in dot and "<b>block(wide)</b>" in dot
    dot = netdsl.parse("def unit(c, s=1) { conv filters=c kernel=3 stride=s same }\ninput 8x8x1\nunit(4, s=2)").to_dot()
    assert "<b>unit(4, s=2)</b>" in dot


def test_long_spec_draws_in_linear_time():
    import time

    text = "input 8\n" + "relu\n" * 40_000
    net = netdsl.parse(text)
    start = time.perf_counter()
    dot = to_dot(net, compact=False)
    took = time.perf_counter() - start
    assert dot.count("[label=") == 40_001
    assert took < 20, f"{took:.1f} s for 40,000 lines (it took 65 s when each node split the whole text)"


def test_source_line_is_constant_time():
    import time

    from netdsl.errors import Source

    src = Source("relu\n" * 200_000)
    start = time.perf_counter()
    assert all(src.line(n) == "relu" for n in range(1, 200_001, 7))
    assert src.line(200_001) == "" and src.line(0) == ""
    assert time.perf_counter() - start < 5  # splitting 200,000 lines per call would take hours
