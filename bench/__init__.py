"""
echogate's benchmark suite: the upstream, the baseline servers and
echogate itself, started on 127.0.0.1 and measured with C{wrk}.

Run everything with C{.venv/bin/python bench/run.py} (see
C{docs/performance.md}). Nothing here is a test: the figures are noisy,
and only ratios measured in one run count.
"""
