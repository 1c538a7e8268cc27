"""One-off studies: each answered one question, named in its docstring's ``Study:`` line with the
file under bench/results/ that records the answer. They are kept to rerun or extend, not run by a
harness; the reproduction reports (dgr_report, grcn_experiments, l0sign_table3, lightgnn_report)
hold the evidence behind the rows that bench/reproduce.py (issue 23) gathers.
"""
