"""Client dialects: each front door's wire format, translated to and from the internal model.

`base` holds the interface (read its docstring); one module per dialect, named after what it translates.
"""
