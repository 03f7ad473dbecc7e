"""Progress off a terminal: one line every few seconds, a last line, silence for short work."""

import io
import time

from metarep.progress import LineProgress, progress_bar


def test_lines_carry_counts_metrics_and_time_left_and_a_last_line():
    out = io.StringIO()
    bar = LineProgress(10, desc="fo_anil", unit="step", every=0.05, stream=out)
    for _ in range(10):
        time.sleep(0.03)
        bar.set_postfix(perp_norm2="1.3")
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2
    assert lines[0].startswith("fo_anil: ") and " steps (" in lines[0] and "perp_norm2=1.3" in lines[0]
    assert "elapsed" in lines[0] and "left ~" in lines[0]
    assert lines[-1].startswith("fo_anil: 10/10 steps (100%)")


def test_a_line_comes_even_when_no_unit_of_work_finishes():
    out = io.StringIO()
    bar = LineProgress(3, desc="runs", unit="run", every=0.05, stream=out)
    time.sleep(0.3)  # a long run: no update, the heartbeat still reports
    n_lines = len(out.getvalue().splitlines())
    bar.close()
    assert n_lines >= 2 and out.getvalue().startswith("runs: 0/3 runs (0%)")


def test_short_work_stays_quiet_and_disabled_progress_prints_nothing(capsys):
    out = io.StringIO()
    bar = LineProgress(5, every=10.0, stream=out)
    bar.update(5)
    bar.close()
    assert out.getvalue() == ""
    for _ in progress_bar(iterable=range(3), enabled=False):
        pass
    assert capsys.readouterr().err == ""


def test_off_a_terminal_progress_is_lines():
    bar = progress_bar(3, enabled=True)
    bar.close()
    assert isinstance(bar, LineProgress)  # pytest's stderr is not a terminal
