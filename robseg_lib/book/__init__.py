"""Book support: what the chapters compute and show (experiments, claims, figures, the explorer widget).

The third layer of the stack: it builds on the engines and the core; nothing below imports it. Notebooks call
these functions, so that no logic lives in a notebook.
"""
