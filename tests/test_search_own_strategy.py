"""A strategy of one's own (``--strategy FILE.py:CLASS`` / ``MODULE:CLASS``): the README's example
keeps the strategy contract, searches, resumes from another folder, shows in nas-results; bad
names and options are one line; a strategy that raises leaves a run that resumes once fixed."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from mobilenas.results.cli import main as nas_results
from mobilenas.search.base import Strategy
from mobilenas.search.cli import main as nas_search
from mobilenas.search.contract import StrategyContract
from mobilenas.search.strategies import config_from_dict, describe_options, make_strategy

from helpers import cell_search_args as _args

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The code block of the README that starts with '# greedy.py'."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(block for block in blocks if block.startswith("# greedy.py"))
    return example


@pytest.fixture(scope="module")
def greedy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("own") / "greedy.py"
    path.write_text(readme_example())
    return path


def _trained(run: Path) -> list[dict]:
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]
    return [e for e in events if e["type"] == "result" and e["source"] == "trained"]


class TestReadmeExampleContract(StrategyContract):
    """The README's Greedy keeps every rule the built-in strategies keep (it learns the toy problem)."""

    spec: str = ""

    @pytest.fixture(autouse=True)
    def _spec(self, greedy: Path) -> None:
        self.spec = f"{greedy}:Greedy"

    def make(self, num_options: Sequence[int], seed: int) -> Strategy:
        return make_strategy(self.spec, num_options, seed)


def test_options_come_from_config_cls(greedy: Path) -> None:
    spec = f"{greedy}:Greedy"
    assert [row["name"] for row in describe_options(spec)] == ["warmup", "mutations"]
    assert describe_options(spec)[0]["default"] == 10 and "random proposals first" in describe_options(spec)[0]["description"]
    config = config_from_dict(spec, {"warmup": "3"})
    assert config.warmup == 3 and make_strategy(spec, (2, 3), 0, config).config.warmup == 3


def test_search_resume_from_elsewhere_and_results(greedy: Path, cells: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(greedy.parent)
    run = tmp_path / "run"
    assert nas_search(_args(cells, run, "--strategy", "greedy.py:Greedy", "--strategy-option", "warmup=4", "--samples", "8")) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["strategy"] == f"{greedy}:Greedy"  # absolute: a resume may start elsewhere
    assert manifest["strategy"]["config"] == {"warmup": 4, "mutations": 1}
    assert len(_trained(run)) == 8
    monkeypatch.chdir(tmp_path)
    assert nas_search(["--resume", str(run), "--samples", "14", "--quiet"]) == 0
    # the same trials as one run never stopped: the strategy's state went through strategy.pt
    straight = tmp_path / "straight"
    assert nas_search(_args(cells, straight, "--strategy", str(greedy) + ":Greedy", "--strategy-option", "warmup=4", "--samples", "14")) == 0
    trained = [(e["number"], e["accuracy"], e["latency_ms"]) for e in _trained(run)]
    assert len(trained) == 14 and trained == [(e["number"], e["accuracy"], e["latency_ms"]) for e in _trained(straight)]
    assert "changed since this run started" not in capsys.readouterr().err
    assert json.loads((run / "manifest.json").read_text())["strategy"]["code_sha256"] == hashlib.sha256(greedy.read_bytes()).hexdigest()
    # an edited strategy goes on with its new code, and the resume says so
    source = greedy.read_text()
    greedy.write_text(source + "\n# edited\n")
    try:
        assert nas_search(["--resume", str(run), "--samples", "15", "--quiet"]) == 0
        assert f"note: {greedy} changed since this run started; the run goes on with the code as it is now" in capsys.readouterr().err
    finally:
        greedy.write_text(source)
    # the strategy's file moved, or no longer holds the class: the resume says so
    from mobilenas.search import strategies

    moved = greedy.with_name("greedy-moved.py")
    greedy.rename(moved)
    strategies._PLUGINS.pop(f"{greedy}:Greedy", None)  # loaded once a process: a new process reads the file again
    try:
        capsys.readouterr()
        assert nas_search(["--resume", str(run), "--samples", "17", "--quiet"]) == 2
        assert capsys.readouterr().err.strip() == (f"nas-search: error: this run searches with {greedy}:Greedy, and {greedy} is gone; put the file back there,"
                                                     " or give its new place (nas-search --resume RUN --strategy NEW.py:Greedy), to resume")
        greedy.write_text(moved.read_text().replace("class Greedy(Strategy):", "class Renamed(Strategy):"))
        assert nas_search(["--resume", str(run), "--samples", "17", "--quiet"]) == 2
        assert capsys.readouterr().err.strip() == f"nas-search: error: this run's strategy {greedy}:Greedy cannot be loaded now: {greedy} has no 'Greedy'; mend it to resume"
    finally:
        moved.replace(greedy)
        strategies._PLUGINS.pop(f"{greedy}:Greedy", None)
    assert len(_trained(run)) == 15
    capsys.readouterr()
    assert nas_results(["show", str(run)]) == 0
    assert "strategy greedy.py:Greedy (seed 0)" in capsys.readouterr().out
    # --strategy-option help reads the strategy's own options
    assert nas_search(["--strategy", str(greedy) + ":Greedy", "--strategy-option", "help"]) == 0
    assert "warmup=10\n" in capsys.readouterr().out


def test_a_run_whose_strategy_file_moved_resumes_with_its_new_place(greedy: Path, cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The resume had refused --strategy NEW.py:CLASS ('drop --strategy') and asked for the file back."""
    code = tmp_path / "mine.py"
    code.write_text(greedy.read_text())
    run = tmp_path / "run"
    assert nas_search(_args(cells, run, "--strategy", f"{code}:Greedy", "--samples", "6")) == 0
    moved = tmp_path / "elsewhere" / "theirs.py"
    moved.parent.mkdir()
    code.rename(moved)
    capsys.readouterr()
    assert nas_search(["--resume", str(run), "--samples", "9", "--strategy", f"{moved}:Other"]) == 2  # another class: still refused
    assert "drop --strategy" in capsys.readouterr().err
    before = (run / "manifest.json").read_bytes()
    assert nas_search(["--resume", str(run), "--samples", "9", "--strategy", f"{moved}:Greedy", "--seed", "7"]) == 2  # refused: nothing written
    assert "drop --seed" in capsys.readouterr().err and (run / "manifest.json").read_bytes() == before
    assert nas_search(["--resume", str(run), "--samples", "9", "--strategy", f"{moved}:Greedy"]) == 0
    assert f"the run's strategy file {code} is gone: using {moved}" in capsys.readouterr().err
    assert sorted(e["number"] for e in _trained(run)) == list(range(9))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["strategy"] == manifest["strategy"]["name"] == f"{moved}:Greedy"
    assert nas_search(["--resume", str(run), "--samples", "10", "--quiet"]) == 0  # the new place is the run's now


def test_a_module_strategy_and_one_without_options(greedy: Path, cells: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "plain_strategy.py").write_text(
        readme_example().replace("    config_cls = GreedyConfig\n", "").replace("class Greedy(Strategy):", "class Plain(Strategy):")
    )
    monkeypatch.syspath_prepend(str(folder))
    assert nas_search(_args(cells, tmp_path / "run", "--strategy", "plain_strategy:Plain", "--samples", "5")) == 0
    assert len(_trained(tmp_path / "run")) == 5
    capsys.readouterr()
    assert nas_search(_args(cells, tmp_path / "refused", "--strategy", "plain_strategy:Plain", "--strategy-option", "warmup=3")) == 2
    assert "plain_strategy:Plain.warmup: unknown option (known: none)" in capsys.readouterr().err
    assert nas_search(["--strategy", "plain_strategy:Plain", "--strategy-option", "help"]) == 0
    assert "plain_strategy:Plain has no options" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.py:Greedy", "missing.py is not a file; give MODULE:CLASS (an importable module) or FILE.py:CLASS"),
        ("greedy.py:Nope", "greedy.py has no 'Nope'"),
        ("greedy.py:np", "np is not a subclass of mobilenas.search.base.Strategy"),
        ("greedy.py:", "give MODULE:CLASS (an importable module) or FILE.py:CLASS, e.g. my_strategy.py:Greedy"),
        ("no_such_module_here:Greedy", "no module named 'no_such_module_here' can be imported (is it installed? a file of your own is named by its path"),
        ("broken.py:Greedy", "importing {folder}/broken.py failed: NameError: name 'undefined_name' is not defined"),
        ("abstract.py:Half", "Half does not implement load_state_dict, state_dict"),
        ("greedy", "argument --strategy: unknown strategy 'greedy': choose one of ppo, reinforce, evolution, random, tpe, nsga2, or give one of your own"),
        ("greedy.py", "argument --strategy: strategy 'greedy.py' names a file but not its class: give FILE.py:CLASS, e.g. greedy.py:Greedy"),
    ],
)
def test_bad_names_are_one_line_before_any_work(name: str, message: str, greedy: Path, cells: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "greedy.py").write_text(greedy.read_text())
    (folder / "broken.py").write_text("undefined_name\n")
    (folder / "abstract.py").write_text(
        "from mobilenas.search.base import Strategy\n\nclass Half(Strategy):\n    def ask(self): ...\n    def tell(self, number, observation): ...\n"
    )
    monkeypatch.chdir(folder)
    assert nas_search(_args(cells, tmp_path / "run", "--strategy", name)) == 2
    err = capsys.readouterr().err
    assert message.format(folder=folder) in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_a_strategy_that_raises_keeps_the_run_and_resumes_once_fixed(greedy: Path, cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    buggy = tmp_path / "buggy.py"
    source = readme_example()
    line = "        indices = self.pending.pop(number)\n"
    assert line in source
    buggy.write_text(source.replace(line, "        if number == 6 and not FIXED:\n            raise KeyError('a bug')\n" + line) + "\nFIXED = False\n")
    run = tmp_path / "run"
    assert nas_search(_args(cells, run, "--strategy", f"{buggy}:Greedy", "--samples", "10")) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "raise KeyError('a bug')" in err
    assert err.strip().splitlines()[-1] == (
        f"nas-search: your strategy {buggy}:Greedy raised KeyError: 'a bug' (traceback above); completed work is saved; "
        f"once it is fixed, continue with: nas-search --resume {run}"
    )
    assert 6 <= len(_trained(run)) < 10
    buggy.write_text(buggy.read_text().replace("FIXED = False", "FIXED = True"))
    sys.modules.pop(next((m for m, module in sys.modules.items() if getattr(module, "__file__", None) == str(buggy)), ""), None)
    from mobilenas.search import strategies

    strategies._PLUGINS.pop(f"{buggy}:Greedy")  # a new process would load the fixed file: so does this one
    assert nas_search(["--resume", str(run), "--quiet"]) == 0
    assert sorted(e["number"] for e in _trained(run)) == list(range(10))


@pytest.mark.slow
def test_benchmark_one_compares_a_strategy_of_ones_own(greedy: Path, cells: Path, tmp_path: Path) -> None:
    """benchmarks/strategies_nb201.py runs its protocol on the README's Greedy beside random search."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "strategies_nb201.py"
    code = tmp_path / "code" / "greedy.py"
    code.parent.mkdir()
    code.write_text(greedy.read_text())
    mine = ["--data", str(cells), "--columns", "latency_ms_toy", "--seeds", "2", "--queries", "20", "--cache", str(tmp_path / "cache"), "--strategies", "random,greedy.py:Greedy"]

    def bench(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), *mine, *args], capture_output=True, text=True, timeout=300, cwd=code.parent)

    refused = bench()
    assert refused.returncode == 2 and "give --out STEM (or --no-write) to compare" in refused.stderr
    out = ["--option", "greedy.py:Greedy.warmup=5", "--out", str(tmp_path / "mine")]
    done = bench(*out)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "mine.md").read_text()
    assert "\n| greedy.py:Greedy | " in text and "\n| random | " in text
    assert '{"warmup": 5, "mutations": 1}' in text and "![regret against queries](mine.png)" in text
    assert (tmp_path / "mine.png").is_file()
    # the cache knows the strategy's code: an unchanged strategy is not run again, an edited one is
    assert "8 runs cached, 0 to run" in bench(*out).stderr
    code.write_text(code.read_text() + "\n# edited\n")
    assert "4 runs cached, 4 to run" in bench(*out).stderr


def test_benchmark_one_tells_apart_strategies_from_files_of_one_name(greedy: Path, cells: Path, tmp_path: Path) -> None:
    """Two strategies from files of the same name each get their row (the folder tells them apart)
    and their own --option; a strategy named twice is one line, exit 2."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "strategies_nb201.py"

    def bench(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "greedy.py").write_text(greedy.read_text())
    both = f"{tmp_path / 'a' / 'greedy.py'}:Greedy,{tmp_path / 'b' / 'greedy.py'}:Greedy"
    common = ["--data", str(cells), "--columns", "latency_ms_toy", "--quantiles", "0.5", "--seeds", "2", "--queries", "15", "--cache", str(tmp_path / "cache"), "--no-write"]
    done = bench(*common, "--strategies", both, "--option", "a/greedy.py:Greedy.warmup=3")
    assert done.returncode == 0, done.stderr
    assert "\n| a/greedy.py:Greedy | " in done.stdout and "\n| b/greedy.py:Greedy | " in done.stdout
    assert '{"warmup": 3, "mutations": 1}' in done.stdout and '{"warmup": 10, "mutations": 1}' in done.stdout
    twice = bench(*common, "--strategies", f"random,{tmp_path / 'a' / 'greedy.py'}:Greedy,random")
    assert twice.returncode == 2 and len(twice.stderr.strip().splitlines()) == 1 and "--strategies names random twice: name each strategy once" in twice.stderr


@pytest.mark.parametrize(("option", "said"), [
    (["--seeds", "1"], "a seed-to-seed standard deviation needs at least 2 seeds"),
    (["--first-seed", "-3"], "--first-seed: expected a whole number from 0"),
    (["--quantiles", "0.25,1.5"], "--quantiles '0.25,1.5' must be numbers in [0, 1]"),
])
def test_benchmark_one_refuses_bad_options_before_any_run(option: list[str], said: str, tmp_path: Path) -> None:
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "strategies_nb201.py"
    done = subprocess.run([sys.executable, str(script), *option, "--cache", str(tmp_path / "cache"), "--no-write"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and said in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "cache").exists()


def test_benchmark_one_keeps_the_committed_results_from_a_run_that_changes_its_protocol(tmp_path: Path) -> None:
    """A small run without --out had written over the committed benchmarks/strategies_nb201.md/.json/.png."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "strategies_nb201.py"
    committed = {path: path.read_bytes() for path in script.parent.glob("strategies_nb201.*") if path.is_file()}
    done = subprocess.run([sys.executable, str(script), "--seeds", "2", "--queries", "50", "--cache", str(tmp_path / "cache")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "give --out STEM (or --no-write): the default writes the committed results of the benchmark's protocol, and --queries, --seeds change it" in done.stderr
    assert not (tmp_path / "cache").exists()
    assert {path: path.read_bytes() for path in committed} == committed


def test_nas_results_tells_a_run_stopped_early_from_one_not_finished(greedy: Path, cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's Greedy converges (every neighbour of its best known): the search stops before
    --samples, and nas-results says why; a run cut short says how it goes on."""
    run = tmp_path / "converged"
    assert nas_search(_args(cells, run, "--strategy", f"{greedy}:Greedy", "--strategy-option", "warmup=3", "--samples", "300")) == 0
    trained = len(_trained(run))
    assert trained < 300
    # trials.csv holds every result, the 1000 duplicates that made it stop included (they were left out)
    results = [e for e in map(json.loads, (run / "events.jsonl").read_text().splitlines()) if e.get("type") == "result"]
    with open(run / "trials.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(results) >= trained + 1000
    capsys.readouterr()
    assert nas_results(["show", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].startswith(f"  trials          {trained} evaluated (0 failed) of --samples 300, ")
    assert lines[4] == f"  stopped early   the greedy strategy proposed 1000 already-evaluated architectures in a row ({trained} distinct ones evaluated): the search has converged"
    assert nas_results(["show", str(run), "--json"]) == 0
    assert "already-evaluated architectures in a row" in json.loads(capsys.readouterr().out)["summary"]["stopped"]
    # more --samples cannot take a converged search further: refused, the run left as it was
    before = {name: (run / name).read_bytes() for name in ("manifest.json", "events.jsonl")}
    assert nas_search(["--resume", str(run), "--samples", "400", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().startswith(f"nas-search: error: {run} stopped early, so --samples cannot take it further: the greedy strategy proposed 1000")
    assert {name: (run / name).read_bytes() for name in before} == before
    assert nas_search(["--resume", str(run)]) == 0
    assert f"the run stopped early ({trained} architectures evaluated; why: below); nothing left to evaluate" in capsys.readouterr().err
    # a run that has done 5 of its 8 (what a kill leaves, as far as nas-results can tell)
    cut = tmp_path / "cut"
    assert nas_search(_args(cells, cut, "--strategy", "random", "--samples", "5")) == 0
    manifest = json.loads((cut / "manifest.json").read_text())
    manifest["config"]["samples"] = 8
    (cut / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert nas_results(["show", str(cut)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[4] == f"  not finished    interrupted: nas-search --resume {cut} goes on"
    assert not any(line.startswith("  stopped early") for line in lines)
    # and so do show --json and compare (a killed run had looked finished there)
    assert nas_results(["show", str(cut), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["finished"] is False
    assert nas_results(["compare", str(run), str(cut), "--out", str(tmp_path / "fronts.png"), "--json"]) == 0
    captured = capsys.readouterr()
    assert [r["finished"] for r in json.loads(captured.out)["runs"]] == [True, False]
    assert "note: 1 run not finished: cut (5 of 8 evaluated, interrupted); it is compared on what it did so far (--resume goes on)" in captured.err
    # while a process works on it (holds the run), it is said to be running, by whom
    from mobilenas.runs import RunDir

    with RunDir(cut).claim():
        assert nas_results(["show", str(cut)]) == 0
        assert capsys.readouterr().out.splitlines()[4] == f"  not finished    running now (process {os.getpid()}); show it again for the latest"
        assert nas_results(["show", str(cut), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["running_pid"] == os.getpid()
    assert RunDir(cut).holder() is None and RunDir(tmp_path / "no-such-run").holder() is None


def test_the_convergence_figure_plots_what_a_strategy_of_ones_own_reports(greedy: Path, cells: Path, tmp_path: Path) -> None:
    from mobilenas.results import load_run
    from mobilenas.results.plots import plot_convergence

    source = readme_example()
    assert 'return {"best_reward": ' in source
    other = tmp_path / "other.py"
    other.write_text(source.replace('return {"best_reward": ', 'return {"temperature": '))
    for path, label in ((greedy, "best reward"), (other, "temperature")):
        run = tmp_path / path.stem
        assert nas_search(_args(cells, run, "--strategy", f"{path}:Greedy", "--samples", "12")) == 0
        figure = plot_convergence(load_run(run))
        assert figure.axes[1].get_ylabel() == label
        assert not any("reports no convergence statistic" in text.get_text() for text in figure.axes[1].texts)


# A strategy that returns what breaks the contract: each subclass of the README's Greedy (imported
# from the file beside it, as a script would) gets wrong one thing that ask, summary, state_dict or
# the constructor returns or takes. The error names the method and what was wrong, in one line
# (the traceback would show only the code that used the value), and the run resumes once fixed.
BROKEN = {
    "Tuple": ("def ask(self):\n        return super().ask().indices", "ask() returned a tuple, not a Proposal(number, indices)"),
    "Nothing": ("def ask(self):\n        super().ask()", "ask() returned None, not a Proposal(number, indices)"),
    "TextNumber": ("def ask(self):\n        p = super().ask()\n        return Proposal(str(p.number), p.indices)", "ask() returned a proposal numbered '0': a proposal's number is an int"),
    "SameNumber": ("def ask(self):\n        p = super().ask()\n        return Proposal(0, p.indices)", "ask() returned proposal number 0 after 0: each proposal gets a new number, larger than the last"),
    "OutOfRange": ("def ask(self):\n        p = super().ask()\n        return Proposal(p.number, (99,) + p.indices[1:])", "ask() returned index 99 for decision 0, which has 5 options (0..4)"),
    "Short": ("def ask(self):\n        p = super().ask()\n        return Proposal(p.number, p.indices[1:])", "ask() returned 5 indices for 6 decisions: give one option index per decision"),
    "Halves": ("def ask(self):\n        p = super().ask()\n        return Proposal(p.number, tuple(i + 0.5 for i in p.indices))", "(float) for decision 0: an option index is an int"),
    "Flags": ("def ask(self):\n        p = super().ask()\n        return Proposal(p.number, (True,) * len(p.indices))", "ask() returned index True (bool) for decision 0: an option index is an int"),
    "NoSummary": ("def summary(self):\n        return None", "summary() returned None, not a dict of named numbers (return {} for none)"),
    "TextSummary": ("def summary(self):\n        return {'phase': 'warmup'}", "summary() returned {'phase': 'warmup'}: a summary names numbers"),
    "Unsaveable": ("def state_dict(self):\n        return {**super().state_dict(), 'key': lambda x: x}", "state_dict() returned what cannot be saved (AttributeError: Can't"),
}


def _broken_file(folder: Path, greedy: Path) -> Path:
    (folder / "greedy.py").write_text(greedy.read_text())
    code = "from mobilenas.search.base import Proposal\nfrom greedy import Greedy\n"
    for name, (method, _) in BROKEN.items():
        code += f"\n\nclass {name}(Greedy):\n    {method}\n"
    code += "\n\nclass NoSeed(Greedy):\n    def __init__(self, num_options):\n        super().__init__(num_options)\n"
    (folder / "broken.py").write_text(code)
    return folder / "broken.py"


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_strategy_that_breaks_the_contract_is_named_in_one_line(name: str, greedy: Path, cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = _broken_file(tmp_path, greedy)
    run = tmp_path / "run"
    assert nas_search(_args(cells, run, "--strategy", f"{broken}:{name}", "--samples", "6")) == 1
    said = capsys.readouterr().err.strip()
    err = said.splitlines()[-1]
    assert "Traceback" not in said and all(line.startswith("note: ") for line in said.splitlines()[:-1]), said
    assert err.startswith(f"nas-search: your strategy {broken}:{name}: ") and BROKEN[name][1] in err, err
    assert err.endswith(f"; completed work is saved; once it is fixed, continue with: nas-search --resume {run}"), err
    assert (run / "manifest.json").is_file()


def test_a_strategy_built_with_other_arguments_is_one_line_before_any_work(greedy: Path, cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = _broken_file(tmp_path, greedy)
    assert nas_search(_args(cells, tmp_path / "run", "--strategy", f"{broken}:NoSeed")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a strategy is built as CLASS(num_options, seed, config)" in err, err
    assert not (tmp_path / "run").exists()


def test_indices_are_checked_as_the_strategy_returns_them_and_resume_goes_on_once_fixed(greedy: Path, cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Float indices had been truncated without a word (and journaled as the floats); once the code
    is fixed, --resume goes on from where the run stopped."""
    code = tmp_path / "halves.py"
    code.write_text(readme_example() + "\n\nFIXED = False\n\n\nclass Halves(Greedy):\n    def ask(self):\n        p = super().ask()\n"
                    "        return p if FIXED or p.number < 4 else Proposal(p.number, tuple(i + 0.5 for i in p.indices))\n")
    run = tmp_path / "run"
    assert nas_search(_args(cells, run, "--strategy", f"{code}:Halves", "--samples", "8")) == 1
    assert "ask() returned index " in capsys.readouterr().err
    assert len(_trained(run)) == 4
    code.write_text(code.read_text().replace("FIXED = False", "FIXED = True"))
    sys.modules.pop(next((m for m, module in sys.modules.items() if getattr(module, "__file__", None) == str(code)), ""), None)
    from mobilenas.search import strategies

    strategies._PLUGINS.pop(f"{code}:Halves")
    assert nas_search(["--resume", str(run), "--quiet"]) == 0
    assert sorted(e["number"] for e in _trained(run)) == list(range(8))
    proposals = [e for e in map(json.loads, (run / "events.jsonl").read_text().splitlines()) if e.get("type") == "proposal"]
    assert len(proposals) >= 8 and all(isinstance(i, int) for e in proposals for i in e["indices"])


def test_a_summary_value_that_is_not_finite_is_left_out_of_the_journal(greedy: Path, cells: Path, tmp_path: Path) -> None:
    code = tmp_path / "nan.py"
    code.write_text(readme_example().replace('return {"best_reward": ', 'return {"undefined": float("nan"), "best_reward": '))
    run = tmp_path / "run"
    assert nas_search(_args(cells, run, "--strategy", f"{code}:Greedy", "--samples", "5")) == 0
    lines = (run / "events.jsonl").read_text().splitlines()
    summaries = [json.loads(line)["summary"] for line in lines if '"summary"' in line]
    assert summaries and all("best_reward" in s and "undefined" not in s for s in summaries)
    assert "NaN" not in "".join(lines)


def test_a_strategy_that_repeats_itself_from_the_start_is_not_said_to_converge(greedy: Path, cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = tmp_path / "same.py"
    code.write_text(readme_example() + "\n\nclass Same(Greedy):\n    def ask(self):\n        p = super().ask()\n        return Proposal(p.number, (0,) * len(p.indices))\n")
    run = tmp_path / "run"
    assert nas_search(_args(cells, run, "--strategy", f"{code}:Same", "--samples", "20")) == 0
    said = capsys.readouterr().out
    assert "in a row after only 1 distinct one: does it keep proposing the same architectures whatever it is told?" in said, said


CYCLING = '''
from mobilenas.search.base import Observation, Proposal, Strategy, check_tell


class Cycling(Strategy):
    """Proposes three architectures in turn: after the first three, every proposal is a duplicate."""

    name = "cycling"

    def __init__(self, num_options, seed=0, config=None):
        super().__init__(num_options, seed)
        self.asked, self.told, self.pending = 0, 0, {}

    def ask(self):
        indices = tuple((self.asked % 3) % n for n in self.num_options)
        self.pending[self.asked] = indices
        self.asked += 1
        return Proposal(self.asked - 1, indices)

    def tell(self, number, observation):
        check_tell(number, self.pending, self.asked, observation)
        del self.pending[number]
        self.told += 1

    def summary(self):
        return {"told_so_far": float(self.told)}

    def state_dict(self):
        return {"strategy": "cycling", "asked": self.asked, "told": self.told, "pending": {str(k): list(v) for k, v in self.pending.items()}}

    def load_state_dict(self, state):
        if state.get("strategy") != "cycling":
            raise ValueError("not a cycling state")
        self.asked, self.told = state["asked"], state["told"]
        self.pending = {int(k): tuple(v) for k, v in state["pending"].items()}
'''


def test_a_summary_changed_by_duplicates_is_journaled_and_drawn_to_the_last_result(cells: Path, tmp_path: Path) -> None:
    """A converged strategy's results are mostly duplicates, which it is told too; its summary had
    been journaled after trained results only, so the convergence figure stopped at the last
    training (154 of 1155 results in a review's greedy run)."""
    from mobilenas.results import load_run
    from mobilenas.results.plots import plot_convergence

    (tmp_path / "cycling.py").write_text(CYCLING)
    run = tmp_path / "run"
    assert nas_search(_args(cells, run, "--strategy", f"{tmp_path / 'cycling.py'}:Cycling", "--samples", "4", "--reward", "hard")) == 0
    results = load_run(run)
    trials, log = results.trials, results.strategy_log
    assert len(results.trained()) == 3 and len(trials) > 10  # the de-duplication asked again and again
    # the summary after the duplicates (each one told to the strategy) reaches the last result
    assert int(log["order"].max()) == int(trials["order"].max())
    assert log["told_so_far"].iloc[-1] == len(trials)
    figure = plot_convergence(results)
    drawn = figure.axes[1].lines[0].get_xdata()
    assert max(drawn) == int(trials["order"].max())
