"""``python -m bench``: imgsync vs ``docker save | ssh docker load`` vs ``scp``, on the lab.

See docs/benchmarks.md for what is measured and how to read it.
"""
