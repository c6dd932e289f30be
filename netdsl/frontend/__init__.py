"""netdsl's front end: spec text to the checked IR graph.

``transform``   Lark tree -> typed syntax tree (``syntax``); the only code that knows the grammar
``expander``    statements and layers; ``blocks`` (residual, paths, repeat); ``calls`` (def and calls)
``expr``        values and arithmetic; ``scope`` (scopes, node names); ``cost`` (limits, costing)
``recipe``      the `train` and `data` statements
``diagnostics`` the one place errors are collected and the error limit is kept
``driver``      parse -> syntax tree -> expand -> infer
"""
